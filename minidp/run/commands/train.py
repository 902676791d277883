"""`minidp train`: DP fine-tuning of a Hugging Face checkpoint on a GLUE task or a CSV/TSV file."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from minidp.run.config import TRAIN_FLAGS, PrivacyConfig, RunConfig, TrainConfig
from minidp.backend import resolve_device
from minidp.errors import ConfigError, DataError
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
    # The config's flags are generated from its fields (minidp/run/config.py); only the flags that are no field
    # are written here.
    groups = {"model": parser.add_argument_group("model"), "data": parser.add_argument_group("data"),
              "privacy": parser.add_argument_group("privacy"), "optim": parser.add_argument_group("optimisation"),
              "denoise": parser.add_argument_group("denoising (post-processing: no privacy cost)"),
              "run": parser.add_argument_group("run")}
    TRAIN_FLAGS.add_to(groups)
    r = groups["run"]
    r.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    r.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint with its saved config (flags that "
                   "would change the result are refused)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    parser.set_defaults(func=run)


def config_from_args(args) -> TrainConfig:
    """The validated TrainConfig the parsed flags describe: generated from the fields (``TRAIN_FLAGS.config``),
    after the three rules no single field holds: --epsilon defaults to 8 unless --noise-multiplier or
    --non-private; --epochs defaults to 1 unless --steps; --device None is $MINIDP_DEVICE (resolve_device)."""
    values = dict(vars(args))
    if args.epsilon is None and args.noise_multiplier is None and not args.non_private:
        values["epsilon"] = PrivacyConfig.epsilon  # the field's default, 8
    if args.epochs is None and args.steps is None:
        values["epochs"] = RunConfig.epochs  # the field's default, 1
    values["device"] = resolve_device(args.device)
    return TRAIN_FLAGS.config(values).validate()


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
    """The argparse namespace (as a dict: ``defaults`` with the config's flags) that config_from_args maps onto
    ``config``; generated from the fields (``TRAIN_FLAGS.args_of``)."""
    return {**defaults, **TRAIN_FLAGS.args_of(config)}


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
