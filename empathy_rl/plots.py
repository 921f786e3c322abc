"""PNG plots of a run's main curves, drawn from its `metrics.jsonl` (finished or still running).

`empathy-rl plot RUN_DIR` draws them for any run; the trainer draws them at the end of a run
(`logging.plots`). One figure per theme, under `<run_dir>/plots/`:

    reward.png    reward mean (± std), format pass rate, answer and crisis components; evaluations as points
    training.png  KL, loss, clip fraction, gradient norm
    timing.png    seconds per phase (generate, reward, train, sync) and generated tokens per second
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIGURES: dict[str, list[tuple[str, str]]] = {  # file -> [(metric key, label)] ; one panel per pair
    "reward": [
        ("reward/mean", "reward (mean ± std)"),
        ("reward/format_pass_rate", "format pass rate"),
        ("reward/answer_mean", "answer reward"),
        ("reward/crisis_mean", "crisis component"),
    ],
    "training": [("train/kl", "KL to reference"), ("train/loss", "loss"), ("train/clip_frac", "clip fraction"), ("train/grad_norm", "gradient norm")],
    "timing": [
        ("time/generate_s", "generate (s)"),
        ("time/reward_s", "reward (s)"),
        ("time/train_s", "train (s)"),
        ("time/sync_s", "sync (s)"),
        ("rollout/tokens_per_s", "generated tokens / s"),
        ("time/step_s", "step (s)"),
    ],
}
EVAL_OF = {"reward/mean": "eval/mean", "reward/format_pass_rate": "eval/format_pass_rate"}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a run directory?")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a run being written
            continue
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write the figures of `run_dir`; returns their paths. Panels without data are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    steps = [r for r in records if r.get("phase") == "grpo"]
    evals = [r for r in records if r.get("phase") == "eval"]
    if not steps:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} holds no GRPO step yet: nothing to plot")
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for name, panels in FIGURES.items():
        panels = [(k, label) for k, label in panels if any(k in r for r in steps)]
        if not panels:
            continue
        cols = 2
        rows = (len(panels) + 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(10, 3.2 * rows), squeeze=False)
        for ax, (key, label) in zip(axes.flat, panels):
            xs = [r["step"] for r in steps if key in r]
            ys = [r[key] for r in steps if key in r]
            ax.plot(xs, ys, lw=1.2, label="train steps")
            if key == "reward/mean" and all("reward/std" in r for r in steps):
                std = [r["reward/std"] for r in steps]
                ax.fill_between(xs, [y - s for y, s in zip(ys, std)], [y + s for y, s in zip(ys, std)], alpha=0.2)
            if key in EVAL_OF and evals:
                ax.plot([r["step"] for r in evals], [r[EVAL_OF[key]] for r in evals], "o", label="evaluation")
                ax.legend(fontsize=8)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.suptitle(f"{run_dir.name}: {name}")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
