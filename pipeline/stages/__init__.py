"""The DVC stages: one module (or package) per stage, each with the params section it reads."""
