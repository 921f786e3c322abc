"""Rollout: vLLM engines as Ray actors that sample G Chain-of-Empathy candidates per query.

- `types`: the records this stage produces (`Prompt` in, `RolloutBatch` out).
- `prompts`: chat-template prompts with the CoE system prompt, and the over-long prompt policy.
- `vllm_engine`: `RolloutWorker`, the Ray actor that owns one vLLM engine.
- `worker_extension`: code that runs inside vLLM's worker to receive new weights.
- `pool`: `RolloutPool`, spreads prompts over workers and pushes weights to all of them.
"""
