"""Human ranking of systems (Win@K), as in the Empathy-R1 paper's human evaluation.

- `sets`: comparison sets from an evaluation's generations.jsonl: anonymised, shuffled per case,
  the position -> system key kept in a separate file (`rank export`).
- `store`: SQLite rankings, one row per (rater, case).
- `pages`: the local ranking page (`rank serve`), keyboard driven and resumable.
- `report`: Win@1, Win@K, mean rank with bootstrap intervals and Kendall's W (`rank report`).
- `judge`: an optional LLM judge on an OpenAI-compatible endpoint, stored as one more rater.
"""
