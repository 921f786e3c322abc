"""The reference metrics (empathy_rl.eval_metrics): hand-checked values, tokenisation, bootstrap,
and on real counselling answers from ../shared/data (English and Chinese) that a counsellor's own
answer scores above an answer to another question."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empathy_rl import eval_metrics as em
from empathy_rl.eval_metrics import MeteorSetup, aggregate, bootstrap_intervals, segment_stats, tokenize

NO_WORDNET = MeteorSetup(None, "test: exact + stem")


def test_tokenisation_zh_characters_and_en_words() -> None:
    assert tokenize("我很难过。OK 2024年", "zh") == ["我", "很", "难", "过", "ok", "2024", "年"]
    assert tokenize("I don't feel OK, really!", "en") == ["i", "don't", "feel", "ok", "really"]
    with pytest.raises(em.MetricsError, match="eval.zh_tokenizer"):
        tokenize("你好", "zh", "spaces")
    with pytest.raises(em.MetricsError, match="language 'fr'"):
        tokenize("bonjour", "fr")


def test_jieba_words() -> None:
    pytest.importorskip("jieba")
    words = tokenize("我今天很难过。", "zh", "jieba")
    assert "".join(words) == "我今天很难过"  # punctuation dropped, every character kept
    assert len(words) < 6  # words, not characters


def test_english_hand_checked() -> None:
    # hyp: the cat sat on the mat | ref: the cat is on the mat (6 tokens each, so BP = 1)
    # 1-grams matched: the x2, cat, on, mat = 5 of 6          -> BLEU-1 = 5/6
    # 2-grams: the cat, cat sat, sat on, on the, the mat; matched the cat, on the, the mat = 3 of 5
    #                                                          -> BLEU-2 = sqrt(5/6 * 3/5) = sqrt(1/2)
    # LCS "the cat on the mat" = 5: P = R = 5/6                -> ROUGE-L F = 5/6
    # METEOR (exact + stem): 5 matches, P = R = 5/6, Fmean = 5/6; chunks [the cat] [on the mat] = 2,
    #   frag = 2/5, penalty = 0.5 * 0.4^3 = 0.032              -> 5/6 * 0.968 = 0.806667
    # Distinct-1: {the, cat, sat, on, mat} / 6 = 5/6; Distinct-2: 5 distinct of 5 = 1
    s = segment_stats("The cat sat on the mat.", ["the cat is on the mat"], "en", meteor=NO_WORDNET)
    m = aggregate([s])
    assert m["bleu1"] == pytest.approx(5 / 6)
    assert m["bleu2"] == pytest.approx(math.sqrt(0.5))
    assert m["rouge_l"] == pytest.approx(5 / 6)
    assert m["meteor"] == pytest.approx(5 / 6 * 0.968)
    assert m["distinct1"] == pytest.approx(5 / 6)
    assert m["distinct2"] == pytest.approx(1.0)


def test_chinese_hand_checked_on_characters() -> None:
    # hyp 我很难过 (4 characters; the full stop is dropped) | ref 我非常难过 (5)
    # 1-grams matched 我 难 过 = 3 of 4; c = 4 < r = 5: BP = exp(1 - 5/4)  -> BLEU-1 = 0.75 * e^-0.25
    # LCS 我难过 = 3: P = 3/4, R = 3/5, F = 2PR/(P+R) = 0.9/1.35            -> ROUGE-L = 2/3
    # METEOR: 3 matches, P = 3/4, R = 3/5, Fmean = PR/(0.9P + 0.1R) = 0.45/0.735;
    #   chunks [我] [难过] = 2, frag 2/3, penalty 0.5 * (2/3)^3 = 4/27     -> 0.612245 * (1 - 4/27)
    m = aggregate([segment_stats("我很难过。", ["我非常难过"], "zh", meteor=NO_WORDNET)])
    assert m["bleu1"] == pytest.approx(0.75 * math.exp(-0.25))
    assert m["rouge_l"] == pytest.approx(2 / 3)
    assert m["meteor"] == pytest.approx(0.45 / 0.735 * (1 - 4 / 27))


def test_multi_reference_bleu_and_best_reference_rouge() -> None:
    # Two references: "a b c" and "x y z w". hyp "a b z" matches a, b (first) and z (second): 3/3
    # 1-grams; closest reference length to 3 is 3 -> BP = 1 -> BLEU-1 = 1. ROUGE-L: best reference
    # is "a b c" (LCS 2: P = R = 2/3 -> F = 2/3).
    m = aggregate([segment_stats("a b z", ["a b c", "x y z w"], "en", meteor=NO_WORDNET)])
    assert m["bleu1"] == pytest.approx(1.0)
    assert m["rouge_l"] == pytest.approx(2 / 3)


def test_meteor_wordnet_synonyms_when_available() -> None:
    # "he is ill" vs "he is sick": exact + stem match 2 of 3 (P = R = 2/3, one chunk, frag 1/2,
    # penalty 0.5 * 0.125) -> 2/3 * 0.9375 = 0.625; WordNet adds ill ~ sick: 3 of 3 in one chunk,
    # frag 1/3, penalty 0.5/27 -> 1 - 1/54 = 0.981481.
    without = segment_stats("he is ill", ["he is sick"], "en", meteor=NO_WORDNET).meteor
    assert without == pytest.approx(0.625)
    setup = em.meteor_setup(True)
    if setup.wordnet is None:
        pytest.skip(f"no WordNet here ({setup.source}); METEOR runs exact + stem only")
    assert segment_stats("he is ill", ["he is sick"], "en", meteor=setup).meteor == pytest.approx(1 - 1 / 54)
    assert "WordNet" in setup.matching


def test_meteor_without_wordnet_says_so(tmp_path, monkeypatch) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "find", lambda *_a, **_k: (_ for _ in ()).throw(LookupError("none")))
    setup = em.meteor_setup.__wrapped__(True, str(tmp_path / "no-wordnet"))
    assert setup.wordnet is None
    assert setup.matching == "exact + stem only (no WordNet available)"
    assert em.meteor_setup.__wrapped__(False).source.startswith("disabled")


def test_empty_answer_scores_zero_and_no_reference_is_an_error() -> None:
    m = aggregate([segment_stats("", ["a real answer"], "en", meteor=NO_WORDNET)])
    assert m["bleu1"] == 0 and m["rouge_l"] == 0 and m["meteor"] == 0 and m["distinct1"] == 0
    with pytest.raises(em.MetricsError, match="no reference"):
        segment_stats("x", ["  "], "en", meteor=NO_WORDNET)


def test_bootstrap_matches_point_estimate_and_is_seeded() -> None:
    stats = [segment_stats(h, [r], "en", meteor=NO_WORDNET) for h, r in [
        ("i hear you", "i hear how hard this is"), ("call a friend", "please call someone you trust"),
        ("sleep helps", "rest and sleep can help"), ("you matter", "you matter a great deal"),
    ]]
    units = ["a", "b", "c", "d"]
    data = em.BootstrapData(stats, units)
    assert data.metrics(np.ones(4)) == pytest.approx({k: v for k, v in aggregate(stats).items() if k != "answer_tokens"})
    ci1 = bootstrap_intervals(stats, units, 200, seed=3)
    assert ci1 == bootstrap_intervals(stats, units, 200, seed=3)
    point = aggregate(stats)
    for metric, (lo, hi) in ci1.items():
        assert lo <= point[metric] + 1e-9 and point[metric] - 1e-9 <= hi
    assert ci1["rouge_l"][0] < ci1["rouge_l"][1]  # answers differ, so resamples differ
    # identical answers under every prompt: every resample gives the same number
    same = bootstrap_intervals([stats[0]] * 4, units, 50, seed=0)
    assert same["bleu1"][0] == pytest.approx(same["bleu1"][1])


def test_text_metrics_per_language_and_all() -> None:
    out = em.text_metrics(["i hear you", "我很难过", "x"], [["i hear you"], ["我很难过"], [""]], ["en", "zh", "en"], meteor=NO_WORDNET)
    assert out["en"]["bleu1"] == pytest.approx(1.0) and out["zh"]["bleu1"] == pytest.approx(1.0)
    assert out["all"]["skipped_no_reference"] == 1.0
    assert out["all"]["rouge_l"] == pytest.approx(1.0)


def test_counsellor_answer_beats_another_questions_answer_on_shared_data(tmp_path) -> None:
    """Leave-one-out on real data: another counsellor's answer to the same question (en), or the
    record's own answer (zh), scored against the references, beats an answer to another question."""
    from shared_slice import prepare_shared_slice

    from empathy_rl.data import load_records

    prepared = prepare_shared_slice(tmp_path, en_questions=4, zh_dialogues=8)
    records = load_records(prepared, "test") + load_records(prepared, "train")
    for lang in ("en", "zh"):
        own = [r for r in records if r.language == lang]
        if lang == "en":  # leave one answer out: it is the hypothesis, the other counsellors the references
            own = [r for r in own if len(r.answers) >= 2]
            good = [segment_stats(r.answers[0], r.answers[1:], lang, meteor=NO_WORDNET) for r in own]
            bad = [segment_stats(own[(i + 1) % len(own)].answers[0], r.answers[1:], lang, meteor=NO_WORDNET) for i, r in enumerate(own)]
        else:
            good = [segment_stats(r.answers[0], r.answers, lang, meteor=NO_WORDNET) for r in own]
            bad = [segment_stats(own[(i + 1) % len(own)].answers[0], r.answers, lang, meteor=NO_WORDNET) for i, r in enumerate(own)]
        assert len(own) >= 3, lang
        g, b = aggregate(good), aggregate(bad)
        for metric in ("bleu2", "rouge_l", "meteor"):
            assert g[metric] > b[metric], (lang, metric, g[metric], b[metric])
