"""Reward: scores (query, CoE candidate) pairs.

- `components`: pure reward functions (format, answer similarity, crisis referral) and their sum.
- `encoder`: the sentence encoder behind the answer reward (pluggable by path).
- `model`: `RewardModel`, the in-process scorer (no Ray Serve import) that every path uses.
- `serve_app`: the Ray Serve deployment (batched with `@serve.batch`, HTTP face included) and the
  driver-side `RewardClient` that calls it through a `DeploymentHandle`.
"""
