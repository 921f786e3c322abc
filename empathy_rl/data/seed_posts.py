"""The bundled help-seeker posts (`empathy_rl/assets/seed_posts.jsonl`, described in its README).

They are the demo's prompts (prepared by `prepare-data` like any `generic` source), the queries
of the bundled CoE SFT examples, and test material for the prompt builder and crisis detection.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SEED_POSTS_FILE = "seed_posts.jsonl"


def load_seed_posts() -> list[dict[str, Any]]:
    """Every post as a dict (id, language, topic, title, description, answers), in file order."""
    text = resources.files("empathy_rl.assets").joinpath(SEED_POSTS_FILE).read_text(encoding="utf-8")
    posts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            posts.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{SEED_POSTS_FILE}:{number}: invalid JSON ({exc.msg})") from None
    return posts
