"""Training triples and evaluation sets for the reward model, built from prepared records.

A pair is (query, a counsellor's answer to it). Every prepared record gives one pair per answer:
for counsel-chat that is the question (title + text) with each therapist's answer; for CPsyCoun it
is the client's turns joined (exactly the text the policy is prompted with in GRPO) with the
counsellor's turns joined (the record's one answer). Turn-level pairs are not built: the prepared
record keeps no turn boundaries (22% of CPsyCoun dialogues have newlines inside turns), and
whole-dialogue pairs match what the reward scores during GRPO.

Each pair gets one negative answer of every kind listed in `reward_model.negatives`:
- `random`: an answer to another query of the same language;
- `same_topic`: an answer to another query with the same non-empty topic (hard negatives); a pair
  whose record has no topic, or no other record of its topic, gets none (counted as unavailable);
- `echo_exact`, `echo_truncate`, `echo_shuffle`: the query itself, its first part, its sentences
  in another order, so that restating the seeker's words never looks like a good answer;
- `generic`: a one-size-fits-all reply from `reward/assets/generic_replies.json`.

Evaluation sets use the same kinds plus `off_topic` (fluent texts about other things, from
`reward/assets/offtopic_texts.json`, never used for training), one positive (the record's first
answer) and one negative of each kind per held-out query.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from empathy_rl.data import CounselingRecord

ASSETS = Path(__file__).resolve().parent / "assets"
ECHO_KINDS = ("echo_exact", "echo_truncate", "echo_shuffle")
EVAL_KINDS = ("random", "same_topic", "off_topic", "echo_exact", "echo_truncate", "echo_shuffle", "generic")

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？；;…])\s*|\n+")
_CLAUSE_SPLIT = re.compile(r"(?<=[,，、:：])\s*")


# ------------------------------------------------------------------------------ assets


@lru_cache(maxsize=None)
def load_text_asset(name: str) -> dict[str, tuple[str, ...]]:
    """A `{language: [texts]}` JSON asset of `reward/assets/` (keys starting with `_` are comments)."""
    path = ASSETS / name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the reward-model asset: {err}") from err
    out: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if key.startswith("_"):
            continue
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f"{path}: field {key!r} must be a non-empty list of non-empty strings")
        out[key] = tuple(value)
    return out


def generic_replies(language: str) -> tuple[str, ...]:
    return _asset_texts("generic_replies.json", language)


def offtopic_texts(language: str) -> tuple[str, ...]:
    return _asset_texts("offtopic_texts.json", language)


def _asset_texts(name: str, language: str) -> tuple[str, ...]:
    texts = load_text_asset(name)
    if language not in texts:
        raise ValueError(f"{ASSETS / name}: no texts for language {language!r} (has {', '.join(sorted(texts))})")
    return texts[language]


# ------------------------------------------------------------------------------ echoes


def cut_text(text: str, max_chars: int) -> str:
    """The first `max_chars` characters (the same cut is applied at training and scoring time)."""
    return text if len(text) <= max_chars else text[:max_chars]


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (ends: . ! ? 。！？；… or a line break), empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s and s.strip()]


def echo_exact(query: str) -> str:
    """The query, verbatim."""
    return query


def echo_truncate(query: str, ratio: float) -> str:
    """The first `ratio` of the query's characters, ending at a sentence or word end when one is
    in the second half of that span (so the echo reads like a natural, shorter restatement)."""
    if not 0 < ratio < 1:
        raise ValueError(f"reward_model.echo_truncate_ratio must be in (0, 1), got {ratio}")
    keep = max(1, round(len(query) * ratio))
    head = query[:keep]
    ends = [m.end() for m in re.finditer(r"[.!?。！？；;…,，\n ]", head)]
    good = [e for e in ends if e >= keep // 2]
    return (head[: good[-1]] if good else head).strip() or head


def echo_shuffle(query: str, rng: random.Random) -> str:
    """The query's sentences in another order; a one-sentence query is shuffled by clauses, then
    by words (English) or four character blocks (Chinese). Falls back to the reversed pieces when
    a shuffle keeps the order, so the result differs from the query whenever it has two pieces."""
    pieces, joiner = _shuffle_pieces(query)
    if len(pieces) < 2:
        return query
    order = list(range(len(pieces)))
    for _ in range(8):
        rng.shuffle(order)
        if order != sorted(order):
            break
    else:
        order = order[::-1]
    return joiner.join(pieces[i] for i in order)


def _shuffle_pieces(text: str) -> tuple[list[str], str]:
    cjk = bool(re.search(r"[\u4e00-\u9fff]", text))
    joiner = "" if cjk else " "
    sentences = split_sentences(text)
    if len(sentences) >= 2:
        return sentences, joiner
    clauses = [c.strip() for c in _CLAUSE_SPLIT.split(text) if c.strip()]
    if len(clauses) >= 2:
        return clauses, joiner
    if not cjk:
        return text.split(), " "
    step = max(1, len(text) // 4)
    return [text[i : i + step] for i in range(0, len(text), step)], ""


def make_echo(kind: str, query: str, rng: random.Random, truncate_ratio: float) -> str:
    if kind == "echo_exact":
        return echo_exact(query)
    if kind == "echo_truncate":
        return echo_truncate(query, truncate_ratio)
    if kind == "echo_shuffle":
        return echo_shuffle(query, rng)
    raise ValueError(f"unknown echo kind {kind!r}; choose one of {', '.join(ECHO_KINDS)}")


# ------------------------------------------------------------------------------ triples


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negative: str
    kind: str  # which negative kind produced `negative`


@dataclass
class TripleSet:
    """Triples of one language and what went into them (counts only, no text)."""

    language: str
    triples: list[Triple] = field(default_factory=list)
    queries: int = 0
    pairs: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # triples per negative kind
    unavailable: Counter[str] = field(default_factory=Counter)  # pairs that got no negative of a kind

    def summary(self) -> dict:
        return {
            "queries": self.queries, "pairs": self.pairs, "triples": len(self.triples),
            "negatives": dict(sorted(self.kinds.items())), "unavailable": dict(sorted(self.unavailable.items())),
        }


@dataclass(frozen=True)
class _Item:
    query: str
    answers: tuple[str, ...]
    topic: str


def _items(records: Iterable[CounselingRecord], max_chars: int) -> list[_Item]:
    out = []
    for r in records:
        answers = tuple(cut_text(a, max_chars) for a in r.answers if a.strip())
        if r.query.strip() and answers:
            out.append(_Item(cut_text(r.query, max_chars), answers, r.topic.strip()))
    return out


def select_records(records: Sequence[CounselingRecord], language: str, limit: int, seed: int) -> list[CounselingRecord]:
    """The records of `language`, at most `limit` of them (0 = all), a seeded sample in file order."""
    chosen = [r for r in records if r.language == language and r.answers]
    if limit and len(chosen) > limit:
        keep = set(random.Random(seed).sample(range(len(chosen)), limit))
        chosen = [r for i, r in enumerate(chosen) if i in keep]
    return chosen


def _topic_index(items: Sequence[_Item]) -> dict[str, list[int]]:
    """Positions of the items of each topic (items without a topic are left out): same-topic negatives."""
    by_topic: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item.topic:
            by_topic[item.topic].append(i)
    return by_topic


def build_triples(
    records: Sequence[CounselingRecord],
    language: str,
    negatives: Sequence[str],
    *,
    seed: int = 0,
    truncate_ratio: float = 0.5,
    max_chars: int = 1000,
) -> TripleSet:
    """One triple per (query, answer) pair and negative kind. Deterministic for a given seed."""
    rng = random.Random(f"{seed}:{language}:triples")
    items = _items((r for r in records if r.language == language), max_chars)
    out = TripleSet(language, queries=len(items))
    by_topic = _topic_index(items)
    generic = generic_replies(language) if "generic" in negatives else ()
    for i, item in enumerate(items):
        echoes = {kind: make_echo(kind, item.query, rng, truncate_ratio) for kind in negatives if kind in ECHO_KINDS}
        for answer in item.answers:
            out.pairs += 1
            for kind in negatives:
                negative = _negative(kind, i, items, by_topic, echoes, generic, rng)
                if negative is None:
                    out.unavailable[kind] += 1
                    continue
                out.triples.append(Triple(item.query, answer, negative, kind))
                out.kinds[kind] += 1
    return out


def _other_answer(i: int, candidates: Sequence[int], items: Sequence[_Item], rng: random.Random) -> str | None:
    others = [j for j in candidates if j != i]
    if not others:
        return None
    return rng.choice(items[rng.choice(others)].answers)


def _negative(kind, i, items, by_topic, echoes, generic, rng) -> str | None:
    if kind == "random":
        if len(items) < 2:
            return None
        j = rng.randrange(len(items) - 1)
        return rng.choice(items[j + (j >= i)].answers)
    if kind == "same_topic":
        topic = items[i].topic
        return _other_answer(i, by_topic.get(topic, ()), items, rng) if topic else None
    if kind in ECHO_KINDS:
        echo = echoes[kind]
        # a one-piece query cannot be shuffled or cut into something different: no negative
        return echo if kind == "echo_exact" or echo != items[i].query else None
    if kind == "generic":
        return rng.choice(generic)
    raise ValueError(f"unknown negative kind {kind!r}")


# ------------------------------------------------------------------------------ evaluation sets


@dataclass
class EvalSet:
    """Held-out queries of one language: a real answer each, and one negative per kind."""

    language: str
    split: str
    queries: list[str] = field(default_factory=list)
    positives: list[str] = field(default_factory=list)
    negatives: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # kind -> (query index, text)

    def texts(self) -> list[str]:
        """Every distinct text in the set (for encoding each once)."""
        seen = dict.fromkeys(self.queries + self.positives)
        for pairs in self.negatives.values():
            seen.update(dict.fromkeys(t for _, t in pairs))
        return list(seen)


def build_eval_set(
    records: Sequence[CounselingRecord],
    language: str,
    split: str,
    *,
    seed: int = 0,
    truncate_ratio: float = 0.5,
    max_chars: int = 1000,
) -> EvalSet:
    """Query, first answer, and one negative of each of `EVAL_KINDS` per held-out record."""
    rng = random.Random(f"{seed}:{language}:{split}:eval")
    items = _items((r for r in records if r.language == language), max_chars)
    by_topic = _topic_index(items)
    out = EvalSet(language, split, negatives={k: [] for k in EVAL_KINDS})
    generic, offtopic = generic_replies(language), offtopic_texts(language)
    for i, item in enumerate(items):
        out.queries.append(item.query)
        out.positives.append(item.answers[0])
        for kind in EVAL_KINDS:
            if kind == "off_topic":
                negative: str | None = rng.choice(offtopic)
            elif kind == "same_topic":
                # only different records of the same topic; first answers, as for the positives
                others = [j for j in by_topic.get(item.topic, ()) if j != i] if item.topic else []
                negative = items[rng.choice(others)].answers[0] if others else None
            elif kind == "random":
                negative = items[(i + 1 + rng.randrange(len(items) - 1)) % len(items)].answers[0] if len(items) > 1 else None
            elif kind in ECHO_KINDS:
                echo = make_echo(kind, item.query, rng, truncate_ratio)
                negative = echo if kind == "echo_exact" or echo != item.query else None
            else:
                negative = rng.choice(generic)
            if negative is not None:
                out.negatives[kind].append((i, negative))
    return out
