"""Human review of drafted CoE SFT examples (`empathy-rl review`): accept, edit or reject each draft.

- `store`: the reviewed JSONL file is the source of truth, rewritten atomically after each
  decision under a file lock; `<file>.audit.jsonl` records who changed what.
- `pages`: the keyboard-driven, resumable review page on the shared local web app (`webapp`).
- `command`: the `empathy-rl review` subcommand.

Only accepted records train: the SFT stage reads `coe_data.accepted_records`.
"""
