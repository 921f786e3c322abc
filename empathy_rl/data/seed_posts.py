"""The bundled help-seeker posts (`empathy_rl/assets/seed_posts.jsonl`, described in its README).

They are the demo's prompts (prepared by `prepare-data` like any `generic` source), the queries
of the bundled CoE SFT examples, and test material for the prompt builder and crisis detection.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from empathy_rl.jsonl import iter_jsonl_lines

SEED_POSTS_FILE = "seed_posts.jsonl"


def load_seed_posts() -> list[dict[str, Any]]:
    """Every post as a dict (id, language, topic, title, description, answers), in file order."""
    text = resources.files("empathy_rl.assets").joinpath(SEED_POSTS_FILE).read_text(encoding="utf-8")
    return [post for _, post in iter_jsonl_lines(text.split("\n"), SEED_POSTS_FILE, ValueError)]
