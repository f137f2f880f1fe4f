"""Typer commands of the ggik pipeline (one per DVC stage) and the user commands."""
