"""The synthetic "shapes" world: the project's stand-in for web image-text data (see world.py)."""
