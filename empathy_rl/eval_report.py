"""Rendering of an `EvalReport`: report.json, report.md (one table per metric), PNG plots, a terminal table.

Kept apart from generation and scoring so that a report can be re-rendered from report.json alone
(`render_markdown(load_report(path))`) and so that the metric code stays free of matplotlib.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from empathy_rl.eval_metrics import METRIC_LABELS, METRICS

REWARD_LABELS = {
    "format_pass_rate": "format pass rate",
    "reward_mean": "reward (training scorer)",
    "answer_reward_mean": "answer reward",
    "crisis_handled_rate": "crisis handled rate",
    "answer_chars_mean": "answer length (characters)",
    "answer_block_rate": "outputs with an <answer> block",
    "truncated_rate": "cut at max length",
}


def _languages(report: Any) -> list[str]:
    first = next(iter(report.systems.values()), {})
    return [lang for lang in first if lang != "all"] + (["all"] if "all" in first else [])


def _fmt(value: Optional[float], scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value * scale:.{digits}f}"


def _cell(block: dict[str, Any], metric: str) -> str:
    value = block["metrics"].get(metric)
    ci = (block.get("intervals") or {}).get(metric)
    text = _fmt(value, 100)
    return f"{text} [{_fmt(ci[0], 100)}, {_fmt(ci[1], 100)}]" if ci else text


def _reward_cell(block: dict[str, Any], key: str) -> str:
    value = block["reward"].get(key)
    ci = (block.get("reward_intervals") or {}).get(key)
    digits = 0 if key == "answer_chars_mean" else 3
    text = _fmt(value, 1, digits)
    return f"{text} [{_fmt(ci[0], 1, 3)}, {_fmt(ci[1], 1, 3)}]" if ci else text


def render_markdown(report: Any) -> str:
    """The Markdown report: settings, then one table per metric (systems x languages)."""
    s = report.settings
    langs = _languages(report)
    conf = int(round(s["bootstrap"]["confidence"] * 100))
    lines = [
        "# Evaluation report", "",
        f"- split `{s['split']}` of `{s['prepared_dir']}`: {s['prompts']} prompts "
        f"({', '.join(f'{k} {v}' for k, v in s['prompts_per_language'].items())}), {s['crisis_prompts']} crisis",
        f"- decoding: {s['decoding']} (temperature {s['temperature']}), {s['samples_per_prompt']} answer(s) per prompt, "
        f"seed {s['seed']}, at most {s['max_response_len']} tokens",
        f"- systems: " + ", ".join(f"`{n}` = `{v['model_dir']}`" for n, v in s["systems"].items()),
        f"- scored text: {s['scored_text']}",
        *(f"- tokenisation, {lang}: {note}" for lang, note in s["tokenisation"].items()),
        f"- BLEU: {s['bleu']}; ROUGE-L: {s['rouge_l']}; Distinct-n: {s['distinct']}",
        f"- METEOR: NLTK, {s['meteor']['matching']}; WordNet: {s['meteor']['wordnet']}",
        f"- intervals: {conf}% percentile bootstrap over prompts, {s['bootstrap']['resamples']} resamples",
        f"- reward: the training scorer (reward.model.RewardModel), answer mode {s['reward']['answer_mode']}, encoder `{s['reward']['encoder']}`",
        "", "Reference metrics are × 100. Cells: value [interval].", "",
    ]
    header = "| system | " + " | ".join(langs) + " |"
    rule = "| --- | " + " | ".join("---" for _ in langs) + " |"
    for metric in METRICS:
        lines += [f"## {METRIC_LABELS[metric]}", "", header, rule]
        for name, blocks in report.systems.items():
            lines.append(f"| {name} | " + " | ".join(_cell(blocks[lang], metric) for lang in langs) + " |")
        lines.append("")
    for key, label in REWARD_LABELS.items():
        lines += [f"## {label}", "", header, rule]
        for name, blocks in report.systems.items():
            lines.append(f"| {name} | " + " | ".join(_reward_cell(blocks[lang], key) for lang in langs) + " |")
        lines.append("")
    lines += ["## Format failure reasons (answers)", "", header, rule]
    for name, blocks in report.systems.items():
        cells = [", ".join(f"{k} {v}" for k, v in blocks[lang]["reward"]["failures"].items()) or "none" for lang in langs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def format_table(report: Any) -> str:
    """A compact terminal table: one row per system and language."""
    cols = ("BLEU-1", "BLEU-4", "ROUGE-L", "METEOR", "Dist-1", "Dist-2", "format", "reward", "crisis", "chars")
    rows = []
    for name, blocks in report.systems.items():
        for lang in _languages(report):
            b = blocks[lang]
            m, r = b["metrics"], b["reward"]
            rows.append((name, lang, *(_fmt(m[k], 100) for k in ("bleu1", "bleu4", "rouge_l", "meteor", "distinct1", "distinct2")),
                         _fmt(r["format_pass_rate"], 1, 2), _fmt(r["reward_mean"], 1, 2), _fmt(r["crisis_handled_rate"], 1, 2),
                         _fmt(r["answer_chars_mean"], 1, 0)))
    head = ("system", "lang", *cols)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt_row = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt_row(head), fmt_row(tuple("-" * w for w in widths)), *(fmt_row(r) for r in rows)])


def component_table(report: Any) -> str:
    """One row per system over all languages: each reward component beside the total, so that a
    component that never moves (or only mirrors the format) is visible at a glance."""
    head = ("system", "format", "answer", "similarity", "crisis", "reward", "BLEU-1", "ROUGE-L")
    rows = []
    for name, blocks in report.systems.items():
        r, m = blocks["all"]["reward"], blocks["all"]["metrics"]
        rows.append((name, _fmt(r["format_pass_rate"]), _fmt(r["answer_reward_mean"]), _fmt(r["similarity_mean"], 1, 3),
                     _fmt(r["crisis_handled_rate"]), _fmt(r["reward_mean"]), _fmt(m["bleu1"], 100), _fmt(m["rouge_l"], 100)))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt_row = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt_row(head), fmt_row(tuple("-" * w for w in widths)), *(fmt_row(r) for r in rows)])


def write_plots(report: Any, out: Path) -> list[Path]:
    """metrics.png (reference metrics) and reward.png (format pass rate, reward), bars with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = _languages(report)
    names = list(report.systems)
    width = 0.8 / max(len(names), 1)
    written = []
    for filename, keys, getter in (
        ("metrics.png", METRICS, lambda b, k: (b["metrics"].get(k), (b.get("intervals") or {}).get(k), 100.0)),
        ("reward.png", ("format_pass_rate", "reward_mean", "crisis_handled_rate"),
         lambda b, k: (b["reward"].get(k), (b.get("reward_intervals") or {}).get(k), 1.0)),
    ):
        cols = 4 if len(keys) > 4 else len(keys)
        rows = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            for i, name in enumerate(names):
                xs, ys, lo, hi = [], [], [], []
                for j, lang in enumerate(langs):
                    value, ci, scale = getter(report.systems[name][lang], key)
                    if value is None:
                        continue
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(value * scale)
                    lo.append(max(0.0, (value - ci[0]) * scale) if ci else 0.0)
                    hi.append(max(0.0, (ci[1] - value) * scale) if ci else 0.0)
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=name)
            ax.set_xticks(range(len(langs)), langs)
            ax.set_title(METRIC_LABELS.get(key, REWARD_LABELS.get(key, key)), fontsize=9)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        path = out / filename
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write_report(report: Any, out: Path, plots: bool = True) -> None:
    """report.json, report.md and (with `plots`) the PNGs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    if plots:
        write_plots(report, out)


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_report(path: str | Path) -> Any:
    """An `EvalReport` back from report.json (or the directory holding it)."""
    from empathy_rl.evaluation import REPORT_JSON, EvalReport

    p = Path(path)
    p = p / REPORT_JSON if p.is_dir() else p
    data = json.loads(p.read_text(encoding="utf-8"))
    return EvalReport(data["settings"], data["systems"], str(p.parent))
