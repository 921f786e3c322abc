"""Reward: scores (query, CoE candidate) pairs.

- `components`: pure reward functions (format, answer similarity, crisis referral) and their sum.
- `encoder`: the answer encoders behind one interface: plain sentence-transformers ("minilm") or a
  train-rm directory (per-language encoder + query/answer heads + threshold T).
- `embedding_cache`: the encoders' LRU cache of query and reference embeddings (`reward.query_cache_size`).
- `rm_data`, `rm_model`, `rm_train`, `rm_eval`: `empathy-rl train-rm` (triples and echoes, the
  two-head model and its directory, the Ray Train loop, held-out metrics and T calibration).
- `model`: `RewardModel`, the in-process scorer (no Ray Serve import) that every path uses.
- `serve_app`: the Ray Serve deployment (batched with `@serve.batch`, FastAPI face through
  `@serve.ingress`) and `deploy_reward_app`, which also rolls out a new config.
- `http_api`: the HTTP contract: strict request models, limits, 4xx errors naming the field, bearer auth.
- `client`: the driver's `RewardClient` (start / attach / url), with deadlines and bounded retries.
- `standalone`: `empathy-rl serve-reward`; `batch_score`: `empathy-rl score` (in process, no Ray).
"""
