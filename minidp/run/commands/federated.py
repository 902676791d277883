"""`minidp federated`: federated LoRA fine-tuning with client-level DP, with or without a gradient auto-encoder."""
from __future__ import annotations

import argparse
import json
import sys

from minidp.backend import resolve_device
from minidp.run.federated.config import FEDERATED_FLAGS, FederatedConfig, FedPrivacyConfig
from minidp.run.federated.run import run_federated


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "federated", help="federated LoRA fine-tuning with client-level DP (DP-FedAvg, DR-Encoder, FedCG-style)",
        description="Simulated federated fine-tuning of a checkpoint's LoRA adapter: K clients, Poisson client "
        "sampling, E local steps per client, each client's whole update (or its auto-encoder latent) clipped to C, "
        "Gaussian noise added once to the sum (client-level DP, RDP-accounted; GDP shown as an approximation). "
        "Writes RUN_DIR/{config.json, metrics.jsonl, metrics_nonprivate.jsonl, summary.json, model/}. "
        "docs/federated.md explains each choice.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # The config's flags are generated from its fields (minidp/run/federated/config.py); --json is no field.
    groups = {"model": parser.add_argument_group("model"), "data": parser.add_argument_group("data"),
              "federation": parser.add_argument_group("federation"),
              "privacy": parser.add_argument_group("privacy (client level)"),
              "encoder": parser.add_argument_group("encoder"),
              "denoise": parser.add_argument_group("denoising (server-side post-processing: no privacy cost)"),
              "run": parser.add_argument_group("run")}
    FEDERATED_FLAGS.add_to(groups)
    groups["run"].add_argument("--json", action="store_true",
                               help="print the summary as one JSON object at the end")
    parser.set_defaults(func=run)


def config_from_args(args) -> FederatedConfig:
    """The FederatedConfig the parsed flags describe: generated from the fields (``FEDERATED_FLAGS.config``),
    after two rules no single field holds: --epsilon defaults to 8 unless --noise-multiplier or --non-private;
    --device None is $MINIDP_DEVICE (resolve_device)."""
    values = dict(vars(args))
    if args.epsilon is None and args.noise_multiplier is None and not args.non_private:
        values["epsilon"] = FedPrivacyConfig.epsilon  # the field's default, 8
    values["device"] = resolve_device(args.device)
    return FEDERATED_FLAGS.config(values)


def args_of(config: FederatedConfig) -> dict:
    """The inverse of config_from_args: the flag values ({argparse dest: value}) that describe ``config``."""
    return FEDERATED_FLAGS.args_of(config)


def run(args) -> int:
    summary = run_federated(config_from_args(args), log=lambda text: print(text, file=sys.stderr))
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        print(summary["statement"])
        acc = summary["final_eval"].get("accuracy")
        print(f"final accuracy (held-out): {acc:.4f}; bytes per client per round: {summary['bytes_per_client']} "
              f"(compression {summary['compression_ratio']:.2f}x); run directory: {args.out}")
    return 0
