"""empathy-rl."""
