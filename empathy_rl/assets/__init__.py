"""Data files bundled with empathy-rl (read with importlib.resources)."""
