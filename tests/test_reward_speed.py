"""The reward scorer's speed paths change no score: the query/reference embedding cache
(`reward.query_cache_size`), the per-batch dedupe of repeated queries and the encoder batch size give
the same similarities (within 1e-6) as embedding every pair's texts afresh, for a train-rm
directory (frozen MiniLM + heads in en, TF-IDF + projection + heads in zh; mixed-language batches)
and for the plain MiniLM encoder, in binary and reference mode. Also the LRU behaviour of
`EmbeddingCache` and the config key's range check.

The train-rm directory is built here with random (seeded) heads instead of trained ones: no Ray,
no shared data, and query and answer heads that differ, which is what the cache must keep apart."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Sequence

import pytest
import torch

from empathy_rl.coe_data import accepted_records, bundled_path
from empathy_rl.config import ConfigError, RewardConfig, load_config
from reward.embedding_cache import EmbeddingCache
from reward.encoder import SentenceEncoder, TrainedRewardEncoder
from reward.model import RewardModel
from reward.rm_model import FORMAT, FORMAT_VERSION, METADATA_FILE, LanguageScorer, TfidfFeaturizer, build_scorer, save_language
from reward.types import ScoreRequest

TOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread, as a reward replica with num_cpus_per_replica=0 runs (and no OpenMP spinning
    against the other tests on a shared 2-core machine); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def records():
    return accepted_records([bundled_path()])


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, records) -> Path:
    """A reward-model directory (en: MiniLM, zh: TF-IDF) with seeded random heads and T per language."""
    out = tmp_path_factory.mktemp("rm-speed")
    zh_texts = [t for r in records if r.language == "zh" for t in (r.query, r.answer)]
    specs = {"en": {"encoder": "minilm", "base": "minilm", "max_seq_len": 64}, "zh": {"encoder": "tfidf", "dim": 32}}
    languages = {}
    gen = torch.Generator().manual_seed(0)
    for lang, spec in specs.items():
        featurizer = TfidfFeaturizer.fit(zh_texts, ngram_max=2, max_features=3000, min_df=1) if lang == "zh" else None
        scorer = build_scorer(spec, featurizer=featurizer, max_text_chars=1000, seed=1)
        with torch.no_grad():
            for head in (scorer.query_head, scorer.answer_head):
                head.weight.add_(0.3 * torch.randn(head.weight.shape, generator=gen))
                head.bias.add_(0.1 * torch.randn(head.bias.shape, generator=gen))
        languages[lang] = {**save_language(scorer, out / lang), "threshold": 0.1}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "languages": languages, "max_text_chars": 1000}
    (out / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return out


def batch(records, *, seed: int, prompts: int = 5, group: int = 4) -> list[ScoreRequest]:
    """A GRPO-like batch: `prompts` records, both languages, `group` candidates each (other records'
    responses, so answers differ within a group), each with two references."""
    rng = random.Random(seed)
    by_lang = {lang: [r for r in records if r.language == lang] for lang in ("zh", "en")}
    chosen = rng.sample(by_lang["zh"], prompts - prompts // 2) + rng.sample(by_lang["en"], prompts // 2)
    rng.shuffle(chosen)  # languages interleaved in the batch
    items = []
    for r in chosen:
        refs = tuple(x.answer for x in rng.sample(by_lang[r.language], 2))
        for _ in range(group):
            other = rng.choice(by_lang[r.language])
            items.append(ScoreRequest(r.query, other.response(), r.crisis, r.language, refs))
    return items


def fresh_similarity(scorer: LanguageScorer, queries: Sequence[str], answers: Sequence[str]) -> list[float]:
    """The pre-cache formula: every pair's query and answer featurized together, nothing shared."""
    with torch.no_grad():
        feats = scorer.featurize(list(queries) + list(answers))
        n = len(queries)
        q = scorer.embed_queries(feats.take(range(n)))
        a = scorer.embed_answers(feats.take(range(n, 2 * n)))
        return (q * a).sum(-1).tolist()


def fresh_reference(scorer: LanguageScorer, answer: str, refs: Sequence[str]) -> float:
    with torch.no_grad():
        feats = scorer.featurize([answer, *refs])
        emb = scorer.embed_answers(feats.take(range(1 + len(refs))))
        return float((emb[1:] @ emb[0]).max())


def test_cache_lru_and_off() -> None:
    cache = EmbeddingCache(2)
    cache.put("en/query", "a", torch.ones(3))
    cache.put("zh/query", "a", torch.zeros(3))  # same text, other language: its own row
    assert torch.equal(cache.get("en/query", "a"), torch.ones(3))  # a(en) is now the most recent
    cache.put("en/query", "b", torch.full((3,), 2.0))  # evicts the least recent: a(zh)
    assert cache.get("zh/query", "a") is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 1)
    rows, missing = cache.lookup("en/query", ["b", "c", "c", "b", "d"])
    assert list(rows) == ["b"] and missing == ["c", "d"]

    off = EmbeddingCache(0)
    off.put("en/query", "a", torch.ones(3))
    assert off.get("en/query", "a") is None and len(off) == 0
    rows, missing = off.lookup("en/query", ["x", "x", "y"])
    assert rows == {} and missing == ["x", "y"]  # dedupe within a batch works without the cache
    with pytest.raises(ValueError, match="reward.query_cache_size"):
        EmbeddingCache(-1)


def test_query_cache_size_range_is_checked() -> None:
    with pytest.raises(ConfigError, match="reward.query_cache_size"):
        load_config(None, ["model.path=x", "reward.query_cache_size=-1"])
    with pytest.raises(ConfigError, match="reward.encoder_batch_size"):
        load_config(None, ["model.path=x", "reward.encoder_batch_size=0"])


def test_trained_encoder_cached_matches_fresh(rm_dir: Path, records) -> None:
    """Mixed zh/en batches, three steps with repeated prompts: the cached scores equal the fresh
    formula per pair; the second time a prompt comes back only its answers are featurized."""
    enc = TrainedRewardEncoder(rm_dir, query_cache_size=64, batch_size=4)
    featurized: list[int] = []
    for scorer in enc.scorers.values():
        original = scorer.featurize

        def spy(texts, batch_size=64, _original=original):
            featurized.append(len(texts))
            return _original(texts, batch_size)

        scorer.featurize = spy
    steps = [batch(records, seed=1), batch(records, seed=2), batch(records, seed=1)]
    assert {i.language for i in steps[0]} == {"zh", "en"}
    seen: set[tuple[str, str]] = set()
    for step_no, items in enumerate(steps):
        featurized.clear()
        queries, answers, langs = [i.query for i in items], [i.response for i in items], [i.language for i in items]
        got = enc.similarity(queries, answers, langs)
        for lang, scorer in enc.scorers.items():
            idx = [k for k, l in enumerate(langs) if l == lang]
            want = fresh_similarity(scorer, [queries[k] for k in idx], [answers[k] for k in idx])
            assert max(abs(got[k] - w) for k, w in zip(idx, want)) <= TOL
        refs = [i.references for i in items]
        got_ref = enc.reference_similarity(answers, refs, langs)
        for k, item in enumerate(items):
            assert abs(got_ref[k] - fresh_reference(enc.scorers[item.language], answers[k], item.references)) <= TOL
        # each distinct query once, and only the first time it is seen (step 3 repeats step 1: answers only)
        new_queries = {(i.language, i.query) for i in items} - seen
        assert sum(featurized[:2]) == len(items) + len(new_queries)
        assert step_no != 2 or not new_queries
        seen |= new_queries
    assert enc.cache.hits > 0 and len(enc.cache) <= 64


def test_reward_model_scores_equal_with_and_without_cache(rm_dir: Path, records) -> None:
    """`RewardModel.score` in binary and reference mode: cache on vs off give the same Scores, step
    after step. 16 rows: in reference mode (4 queries + 8 references a step) the cache evicts."""
    steps = [batch(records, seed=s, prompts=4) for s in (3, 4, 3)]
    for mode in ("binary", "reference"):
        base = RewardConfig(encoder=str(rm_dir), answer_mode=mode)
        cached = RewardModel(dataclasses.replace(base, query_cache_size=16, encoder_batch_size=16))
        uncached = RewardModel(dataclasses.replace(base, query_cache_size=0, encoder_batch_size=64))
        for items in steps:
            for a, b in zip(cached.score(items), uncached.score(items)):
                assert abs(a.similarity - b.similarity) <= TOL and abs(a.total - b.total) <= TOL and a.answer == pytest.approx(b.answer, abs=TOL)
                assert (a.reference_similarity is None) == (b.reference_similarity is None)
                if a.reference_similarity is not None:
                    assert abs(a.reference_similarity - b.reference_similarity) <= TOL
        assert len(cached.encoder.cache) <= 16 and cached.encoder.cache.hits > 0 and len(uncached.encoder.cache) == 0


def test_plain_minilm_cached_matches_fresh(records) -> None:
    en = [r for r in records if r.language == "en"][:6]
    enc = SentenceEncoder("minilm", max_seq_len=64, query_cache_size=16, batch_size=4)
    queries = [r.query for r in en for _ in range(3)]
    answers = [en[(k + 1) % len(en)].answer for k in range(len(queries))]
    for _ in range(2):  # the second pass takes every query from the cache
        got = enc.similarity(queries, answers)
        fresh = enc.model.encode(queries + answers, convert_to_tensor=True, normalize_embeddings=True)
        want = (fresh[: len(queries)] * fresh[len(queries) :]).sum(-1).tolist()
        assert max(abs(g - w) for g, w in zip(got, want)) <= TOL
    assert enc.cache.hits == len(en)
    refs = [(en[0].answer, en[1].answer)] * 3
    got_ref = enc.reference_similarity(answers[:3], refs)
    fresh = enc.model.encode(answers[:3] + list(refs[0]), convert_to_tensor=True, normalize_embeddings=True)
    want_ref = [float((fresh[3:] @ fresh[k]).max()) for k in range(3)]
    assert max(abs(g - w) for g, w in zip(got_ref, want_ref)) <= TOL
