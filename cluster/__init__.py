"""Files and helpers to run empathy-rl on a Ray cluster."""
