"""`minidp train`: DP fine-tuning of a Hugging Face checkpoint on a GLUE task or a CSV/TSV file."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from minidp.run.config import (CLIP_METHODS, DEFAULT_NORM_CORRECTION, DENOISE_METHODS, DENOISERS, FALLBACKS, NORM_CORRECTIONS, OPTIMIZERS,
                           POOLING_CHOICES, TASKS, DataConfig, DenoiseConfig, ModelConfig, OptimConfig, PrivacyConfig,
                           RunConfig, TrainConfig)
from minidp.backend import resolve_device
from minidp.run.commands.flags import finite_float
from minidp.errors import ConfigError, DataError
from minidp.privacy import ACCOUNTANTS
from minidp.run.rundir import RunDir, strict_dumps
from minidp.run.train import train
from models.hf import read_config

# Run fields a --resume may change: they cannot change the parameters, the noise or ε.
RESUME_ALLOWED = {"run.progress", "run.eval_every", "run.eval_batch_size", "run.plot", "run.save_model",
                  "run.checkpoint_every"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="DP fine-tuning of a checkpoint (Poisson sampling, clipping, noise, RDP accounting)",
        description="Differentially private fine-tuning (DP-SGD / DP-Adam) of a RoBERTa or BERT checkpoint, "
        "optionally with RMT denoising of the noisy gradient matrices. Prints a privacy statement before "
        "and after the run, and writes RUN_DIR/{config.json, metrics.jsonl, summary.json, model/}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = parser.add_argument_group("model")
    m.add_argument("--model", default=None, metavar="DIR",
                   help="HF checkpoint directory: config.json, model.safetensors and tokenizer files "
                   "(required unless --resume)")
    m.add_argument("--trainable", default="all",
                   help="which parameters train: all | no-embeddings | classifier | lora (LoRA factors + the "
                   "classifier, PEFT's SEQ_CLS set; see --lora-modules-to-save) | comma-separated HF names")
    m.add_argument("--lora-rank", type=int, default=8, metavar="R", help="LoRA rank r (--trainable lora)")
    m.add_argument("--lora-alpha", type=finite_float, default=16.0, metavar="A",
                   help="LoRA alpha: the update B A is scaled by alpha / r (--trainable lora)")
    m.add_argument("--lora-targets", default="query,value", metavar="NAMES",
                   help="comma-separated layers that get LoRA (PEFT's rule: module paths ending in a name), "
                   "e.g. query,key,value,attention.output.dense,intermediate.dense,output.dense")
    m.add_argument("--lora-dropout", type=finite_float, default=0.0, metavar="P",
                   help="dropout on the LoRA branch's input (training only)")
    m.add_argument("--lora-modules-to-save", default="", metavar="NAMES",
                   help="head modules that train in full beside the classifier (PEFT's modules_to_save): "
                   "'pooler' trains a BERT checkpoint's pooler (bert.pooler.dense), which PEFT and the default "
                   "leave frozen; RoBERTa's head has none (--trainable lora)")
    m.add_argument("--lora-adapter", default=None, metavar="DIR",
                   help="start from this PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors); "
                   "it sets rank, alpha, targets and dropout")
    m.add_argument("--merge-lora", action="store_true",
                   help="save RUN_DIR/model as a plain HF model with W + (alpha/r) B A merged, instead of "
                   "a PEFT adapter directory")
    m.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    m.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="array backend (default: $MINIDP_DEVICE or cpu)")
    m.add_argument("--max-length", type=int, default=128, help="tokens per example after truncation")
    m.add_argument("--pooling", default=None, choices=POOLING_CHOICES,
                   help="what the classification head reads: cls (the first token, <s> / [CLS]) or mean (the mean "
                   "of the real tokens' last hidden states). Default: the checkpoint's (config.json's "
                   "minidp_pooling, else sentence-transformers' 1_Pooling/config.json, else cls); the run's "
                   "config.json records the one used")

    d = parser.add_argument_group("data")
    d.add_argument("--task", default="sst2", choices=TASKS)
    d.add_argument("--data", default=None, metavar="DIR",
                   help="GLUE folder (holding SST-2/, QNLI/, ...) or the task's own folder")
    d.add_argument("--train-file", default=None, help="a training file instead of --data (csv: any CSV/TSV)")
    d.add_argument("--eval-file", default=None, help="evaluation file (default: hold out --eval-fraction)")
    d.add_argument("--text-column", default=None, help="csv: the text column")
    d.add_argument("--text-pair-column", default=None, help="csv: the second-text column of a pair task")
    d.add_argument("--label-column", default=None, help="csv: the label column")
    d.add_argument("--eval-fraction", type=finite_float, default=0.1, help="held-out share without an eval file")
    d.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N eval examples only")
    d.add_argument("--validation-fraction", type=finite_float, default=None, metavar="F",
                   help="for choosing hyperparameters: evaluate on a stratified share F of the training split "
                   "(seed 0) and train on the rest; the task's dev / held-out split is not used")

    p = parser.add_argument_group("privacy")
    p.add_argument("--epsilon", type=finite_float, default=None,
                   help="target ε (σ is calibrated so the whole run spends at most this); default 8 "
                   "unless --noise-multiplier is given")
    p.add_argument("--delta", type=finite_float, default=None,
                   help="δ (default 1/N^1.1 with N the training examples, the convention of Li et al. 2021: "
                   "δ well below 1/N, so N·δ = N^-0.1 < 1; the statement prints N·δ)")
    p.add_argument("--noise-multiplier", type=finite_float, default=None, help="σ, instead of calibrating from ε")
    p.add_argument("--clip", type=finite_float, default=1.0, help="C: per-example gradient norm bound")
    p.add_argument("--clip-method", default="flat", choices=CLIP_METHODS,
                   help="flat: min(1, C/‖g‖); automatic: C/(‖g‖ + 0.01)")
    p.add_argument("--accountant", default="rdp", choices=ACCOUNTANTS,
                   help="rdp: Rényi DP (Mironov et al. 2019); pld: privacy loss distribution (tighter: a smaller σ "
                   "for the same ε; docs/accountant.md)")
    p.add_argument("--non-private", action="store_true",
                   help="NOT PRIVATE reference run: the same sampling, steps and divisor qN, but σ = 0, clipping "
                   "off and nothing accounted (ε = ∞); every output is labelled not private. Takes no "
                   "--epsilon or --noise-multiplier")

    o = parser.add_argument_group("optimisation")
    length = o.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=finite_float, default=None, help="passes over the data (default 1)")
    length.add_argument("--steps", type=int, default=None, help="number of DP steps")
    o.add_argument("--batch-size", type=int, default=256, help="EXPECTED batch size qN (Poisson sampling)")
    o.add_argument("--max-physical-batch", type=int, default=32, help="examples per forward/backward pass")
    o.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS)
    o.add_argument("--lr", type=finite_float, default=5e-4)
    o.add_argument("--weight-decay", type=finite_float, default=0.0)
    o.add_argument("--momentum", type=finite_float, default=0.0, help="sgd only")
    o.add_argument("--warmup", type=finite_float, default=0.0, help="fraction of steps with linear warm-up")

    z = parser.add_argument_group("denoising (post-processing: no privacy cost)")
    z.add_argument("--denoise", default="none", choices=DENOISERS)
    z.add_argument("--kappa", type=finite_float, default=1.02,
                   help="keep singular values above κ × the bulk edge (1.02: the paper's value)")
    z.add_argument("--norm-correction", default=DEFAULT_NORM_CORRECTION, choices=NORM_CORRECTIONS,
                   help="rescale the denoised matrix to: estimate, √(Σ θ̂²) (the default, chosen on the study's "
                   "evidence); noisy, ‖G‖_F (the paper's Step C); none")
    z.add_argument("--fallback", default="noisy", choices=FALLBACKS, help="when no component is kept")
    z.add_argument("--denoise-method", default="fast", choices=DENOISE_METHODS,
                   help="exact: full SVD per matrix; fast: top singular triplets (equal to exact as measured)")
    z.add_argument("--denoise-min-dim", type=int, default=0,
                   help="skip weight matrices whose smaller side is below this (3 skips a binary head's 2×d "
                   "matrix; 0 denoises every 2-D linear weight, the paper's choice)")

    r = parser.add_argument_group("run")
    r.add_argument("--seed", type=int, default=None,
                   help="make noise, sampling and dropout reproducible (experiments only: the run is then NOT "
                   "private against anyone who knows the seed); default: OS entropy")
    r.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    r.add_argument("--eval-batch-size", type=int, default=128)
    r.add_argument("--out", default=None, metavar="RUN_DIR",
                   help="run directory (refused if it already holds a run, unless --overwrite)")
    r.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    r.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint with its saved config (flags that "
                   "would change the result are refused)")
    r.add_argument("--checkpoint-every", type=int, default=25,
                   help="write RUN_DIR/checkpoint/ every N steps (and always after the last step)")
    r.add_argument("--diagnostics", action="store_true",
                   help="NON-PRIVATE alignment diagnostic: cosines to the clipped (pre-noise) gradient")
    r.add_argument("--plot", action="store_true", help="write plots to RUN_DIR (needs matplotlib)")
    r.add_argument("--no-save-model", action="store_true", help="do not write RUN_DIR/model/")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    parser.set_defaults(func=run)


def config_from_args(args) -> TrainConfig:
    epsilon = args.epsilon if (args.epsilon is not None or args.noise_multiplier is not None
                               or args.non_private) else 8.0
    epochs = args.epochs if (args.epochs is not None or args.steps is not None) else 1.0
    return TrainConfig(
        model=ModelConfig(path=args.model, trainable=args.trainable, dtype=args.dtype,
                          device=resolve_device(args.device), max_length=args.max_length, pooling=args.pooling,
                          lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_targets=args.lora_targets,
                          lora_dropout=args.lora_dropout, lora_adapter=args.lora_adapter,
                          lora_modules_to_save=args.lora_modules_to_save,
                          merge_lora=args.merge_lora),
        data=DataConfig(task=args.task, data_dir=args.data, train_file=args.train_file, eval_file=args.eval_file,
                        text_column=args.text_column, text_pair_column=args.text_pair_column,
                        label_column=args.label_column, eval_fraction=args.eval_fraction,
                        eval_limit=args.eval_limit, validation_fraction=args.validation_fraction),
        privacy=PrivacyConfig(epsilon=epsilon, delta=args.delta, noise_multiplier=args.noise_multiplier,
                              max_grad_norm=args.clip, clip_method=args.clip_method, accountant=args.accountant,
                              non_private=args.non_private),
        optim=OptimConfig(optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                          momentum=args.momentum, warmup_fraction=args.warmup),
        denoise=DenoiseConfig(denoise=args.denoise, kappa=args.kappa, norm_correction=args.norm_correction,
                              fallback=args.fallback, method=args.denoise_method, min_dim=args.denoise_min_dim),
        run=RunConfig(epochs=epochs, steps=args.steps, batch_size=args.batch_size,
                      max_physical_batch=args.max_physical_batch, seed=args.seed, eval_every=args.eval_every,
                      eval_batch_size=args.eval_batch_size, out=args.out, diagnostics=args.diagnostics,
                      plot=args.plot, save_model=not args.no_save_model, progress=not args.no_progress,
                      checkpoint_every=args.checkpoint_every),
    ).validate()


def given_flags(argv: list[str]) -> set[str]:
    """The argparse dests the user actually typed (defaults left out), e.g. {"resume", "no_progress"}."""
    parser = argparse.ArgumentParser(add_help=False)
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    train_parser = sub.choices["train"]
    for action in train_parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    given, _ = parser.parse_known_args(argv)
    return set(vars(given)) - {"command", "func"}


def resume_config(run_dir: str, argv: list[str], args) -> TrainConfig:
    """The saved config of RUN_DIR; a typed flag that would change it (other than RESUME_ALLOWED) is refused."""
    path = Path(run_dir) / "config.json"
    if path.exists():
        RunDir(run_dir).check_usable(resume=True, overwrite=False)  # a checkpoint, and not finished
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
            raw["model"].setdefault("pooling", "cls")  # a run saved before --pooling existed read position 0
            if raw["model"].get("trainable") == "lora" and not raw["model"].get("lora_adapter"):
                raw["model"].setdefault("lora_modules_to_save", legacy_lora_modules_to_save(raw["model"]))
        saved = TrainConfig.from_dict(raw)
    except FileNotFoundError:
        raise ConfigError(f"--resume {run_dir}: no run there ({path} is missing)") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume {run_dir}: {path} is unreadable ({err})") from None
    typed = given_flags(argv) - {"resume", "json"}
    defaults = vars(args).copy()
    # what the typed flags would make of the saved config
    proposed = config_from_args(argparse.Namespace(**{**_args_of(saved, defaults),
                                                      **{k: defaults[k] for k in typed}}))
    changed = {}
    for section, fields in proposed.to_dict().items():
        for name, value in fields.items():
            if value != getattr(getattr(saved, section), name):
                changed[f"{section}.{name}"] = value
    refused = sorted(set(changed) - RESUME_ALLOWED)
    if refused:
        field = refused[0]
        section, name = field.split(".")
        raise ConfigError(f"--resume: {field} = {changed[field]!r} contradicts the saved run "
                          f"({getattr(getattr(saved, section), name)!r}); only {sorted(RESUME_ALLOWED)} may change")
    run_changes = {f.split(".")[1]: v for f, v in changed.items()}
    return dataclasses.replace(saved, run=dataclasses.replace(saved.run, out=str(run_dir), **run_changes))


def legacy_lora_modules_to_save(model: dict) -> str:
    """What a --trainable lora run saved before --lora-modules-to-save existed trained of the head beside the
    classifier: a BERT checkpoint's pooler ("pooler"), RoBERTa nothing more. Read from its checkpoint."""
    try:
        return "pooler" if read_config(model.get("path", "")).get("model_type") == "bert" else ""
    except DataError:
        return ""  # the checkpoint is gone: building the run names the missing directory


def _args_of(config: TrainConfig, defaults: dict) -> dict:
    """The argparse namespace (as a dict) that config_from_args maps onto ``config``."""
    m, d, p, o, z, r = config.model, config.data, config.privacy, config.optim, config.denoise, config.run
    return {**defaults, "model": m.path, "trainable": m.trainable, "dtype": m.dtype, "device": m.device,
            "max_length": m.max_length, "pooling": m.pooling, "lora_rank": m.lora_rank, "lora_alpha": m.lora_alpha,
            "lora_targets": m.lora_targets, "lora_dropout": m.lora_dropout, "lora_adapter": m.lora_adapter,
            "lora_modules_to_save": m.lora_modules_to_save,
            "merge_lora": m.merge_lora, "task": d.task, "data": d.data_dir, "train_file": d.train_file,
            "eval_file": d.eval_file, "text_column": d.text_column, "text_pair_column": d.text_pair_column,
            "label_column": d.label_column, "eval_fraction": d.eval_fraction, "eval_limit": d.eval_limit,
            "validation_fraction": d.validation_fraction,
            "epsilon": p.epsilon, "delta": p.delta, "noise_multiplier": p.noise_multiplier,
            "clip": p.max_grad_norm, "clip_method": p.clip_method, "accountant": p.accountant,
            "non_private": p.non_private, "epochs": r.epochs, "steps": r.steps,
            "batch_size": r.batch_size, "max_physical_batch": r.max_physical_batch, "optimizer": o.optimizer,
            "lr": o.lr, "weight_decay": o.weight_decay, "momentum": o.momentum, "warmup": o.warmup_fraction,
            "denoise": z.denoise, "kappa": z.kappa, "norm_correction": z.norm_correction, "fallback": z.fallback,
            "denoise_method": z.method, "denoise_min_dim": z.min_dim, "seed": r.seed, "eval_every": r.eval_every,
            "eval_batch_size": r.eval_batch_size, "out": r.out, "diagnostics": r.diagnostics, "plot": r.plot,
            "no_save_model": not r.save_model, "no_progress": not r.progress,
            "checkpoint_every": r.checkpoint_every}


def run(args) -> int:
    if args.resume is not None:
        if args.overwrite:
            raise ConfigError("--overwrite cannot be combined with --resume")
        summary = train(resume_config(args.resume, getattr(args, "argv", []), args), resume=True)
    else:
        summary = train(config_from_args(args), overwrite=args.overwrite)
    final = summary.get("final_eval") or {}
    if args.json:
        print(strict_dumps({k: v for k, v in summary.items() if k != "accountant"}))
    elif final:
        print(f"final eval: accuracy = {final.get('accuracy', float('nan')):.4f} on {final.get('examples')} "
              f"examples" + (f", f1 = {final['f1']:.4f}" if "f1" in final else ""))
    return 0
