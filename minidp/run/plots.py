"""Figures (matplotlib, optional: `pip install 'minidp[plot]'`).

    plot_run(RUN_DIR)          RUN_DIR/plots.png from RUN_DIR/metrics.jsonl (``minidp train --plot``): training
                               loss per step (a NON-PRIVATE statistic), ε spent, held-out accuracy and, for RMT
                               runs, the singular components kept
    plot_spectrum(λ, m=, n=, noise_std=, kappa=, path=)
                               the denoiser's view of one released gradient matrix: singular-value histogram,
                               Marchenko–Pastur density of the noise, bulk edge, κ threshold, kept spikes
    plot_spectra([panel, ...], path=)   the same for several matrices side by side (`minidp demo`)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from minidp.backend import to_host
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


def marchenko_pastur_singular_density(x, *, m: int, n: int, noise_std: float):
    """Density of the singular values of an m×n matrix of i.i.d. N(0, s²) entries (large m, n).

    With r = min(m, n), c = max(m, n), y = r/c: the eigenvalues t = λ²/c of (1/c)·G Gᵀ follow Marchenko–Pastur,
        p(t) = √((b − t)(t − a)) / (2π s² y t)  on [a, b] = [s²(1 − √y)², s²(1 + √y)²],
    so the singular values λ = √(c t) have density p(λ²/c) · 2λ/c, supported up to the bulk edge s(√m + √n).
    ``x``: (k,) array of singular values; returns (k,) densities (0 outside the support).
    """
    x = np.asarray(x, dtype=np.float64)
    r, c = min(m, n), max(m, n)
    y, s2 = r / c, noise_std * noise_std
    a, b = s2 * (1 - math.sqrt(y)) ** 2, s2 * (1 + math.sqrt(y)) ** 2
    t = x * x / c
    inside = (t > a) & (t < b)
    density = np.zeros_like(x)
    tt = t[inside]
    density[inside] = np.sqrt((b - tt) * (tt - a)) / (2 * math.pi * s2 * y * tt) * 2 * x[inside] / c
    return density


def plot_spectrum(values, *, noise_std: float, kappa: float, path, m: int | None = None, n: int | None = None,
                  title: str = "") -> Path:
    """Write the teaching figure of one released gradient matrix to ``path`` and return the path.

    ``values``: the released m×n matrix itself (numpy or cupy; its singular values are computed here), or its
    singular values (min(m, n),) with ``m`` and ``n`` given. Draws the histogram of the singular values, the
    Marchenko–Pastur density of pure noise of std ``noise_std`` (s = σC/B), the bulk edge s(√m + √n), the
    RMT threshold κ·edge, and marks the spikes above the threshold (the components the denoiser keeps).
    """
    return plot_spectra([{"values": values, "noise_std": noise_std, "kappa": kappa, "m": m, "n": n,
                          "title": title}], path=path)


def plot_spectra(panels: list, *, path) -> Path:
    """``plot_spectrum`` for several matrices side by side (one panel each, e.g. a step where the denoiser
    keeps spikes and one where it keeps none). ``panels``: dicts with plot_spectrum's keyword arguments
    (``values``, ``noise_std``, ``kappa``, optional ``m``, ``n``, ``title``). Returns the path written."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw_spectrum(ax, **panel)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_spectrum(ax, values, *, noise_std: float, kappa: float, m: int | None = None, n: int | None = None,
                   title: str = "") -> None:
    values = np.asarray(to_host(values), dtype=np.float64)
    if values.ndim == 2:
        m, n = values.shape
        values = np.linalg.svd(values, compute_uv=False)  # (min(m, n),)
    if m is None or n is None:
        raise ConfigError("plot_spectrum: give the matrix, or its singular values with m and n")
    lam = np.sort(values)[::-1]
    edge = noise_std * (math.sqrt(m) + math.sqrt(n))
    threshold = kappa * edge
    kept = lam[lam > threshold]
    hi = max(float(lam[0]), threshold) * 1.05
    ax.hist(lam, bins=min(80, max(10, lam.size // 4)), range=(0, hi), density=True, color="0.7",
            label=f"singular values of the released {m}×{n} gradient")
    grid = np.linspace(0, hi, 600)
    ax.plot(grid, marchenko_pastur_singular_density(grid, m=m, n=n, noise_std=noise_std), "b-", lw=1.2,
            label="Marchenko–Pastur density (noise only)")
    ax.axvline(edge, color="b", ls="--", lw=1, label="bulk edge s(√m+√n)")
    ax.axvline(threshold, color="r", ls=":", lw=1.2, label=f"threshold κ·edge (κ = {kappa:g})")
    for value in kept:
        ax.annotate("", xy=(value, 0), xytext=(value, ax.get_ylim()[1] * 0.35),
                    arrowprops={"arrowstyle": "->", "color": "r"})
    ax.plot(kept, np.zeros_like(kept), "r^", ms=8, label=f"kept spikes ({kept.size})")
    ax.set(xlabel="singular value", ylabel="density", title=title or f"{m}×{n} released gradient")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper right")


def _pyplot():
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'minidp[plot]'") from None
    return plt
