"""Plots of a finished run (``minidp train --plot``): RUN_DIR/plots.png from RUN_DIR/metrics.jsonl.

Needs matplotlib (`pip install 'minidp[plot]'`). Panels: training loss per step (a NON-PRIVATE statistic),
ε spent per step, held-out accuracy at each evaluation, and — for RMT runs — the singular components kept.
"""
from __future__ import annotations

import json
from pathlib import Path

from minidp.errors import ConfigError


def read_metrics(run_dir, name: str = "metrics.jsonl") -> list[dict]:
    """The rows of RUN_DIR/metrics.jsonl (release-safe) or, with name="metrics_nonprivate.jsonl", the
    NON-PRIVATE per-step statistics ([] when the file is absent)."""
    path = Path(run_dir) / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir) -> Path:
    """Write RUN_DIR/plots.png and return its path."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'minidp[plot]'") from None
    rows = read_metrics(run_dir)
    losses = [r for r in read_metrics(run_dir, "metrics_nonprivate.jsonl") if "loss" in r]
    steps = [r for r in rows if "epsilon" in r]
    evals = [r for r in rows if "eval" in r]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    axes[0].plot([r["step"] for r in losses], [r["loss"] for r in losses], lw=0.8)
    axes[0].set(title="training loss (NON-PRIVATE statistic)", xlabel="step")
    axes[1].plot([r["step"] for r in steps], [r["epsilon"] for r in steps])
    axes[1].set(title="ε spent", xlabel="step")
    axes[2].plot([r["step"] for r in evals], [r["eval"].get("accuracy") for r in evals], marker="o")
    axes[2].set(title="held-out accuracy", xlabel="step")
    kept = [r.get("denoise_kept_total") for r in steps]
    if any(k is not None for k in kept):
        axes[3].plot([r["step"] for r in steps], [k or 0 for k in kept], drawstyle="steps-mid")
        axes[3].set(title="RMT: singular components kept", xlabel="step")
    else:
        axes[3].set_axis_off()
    fig.tight_layout()
    out = Path(run_dir) / "plots.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
