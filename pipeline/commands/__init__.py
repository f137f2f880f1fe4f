"""The user commands: solve, plot, compare and ship (and their command-line options)."""
