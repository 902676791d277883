"""`minidp federated`: federated LoRA fine-tuning with client-level DP, with or without a gradient auto-encoder."""
from __future__ import annotations

import argparse
import json
import sys

from minidp.backend import resolve_device
from minidp.run.config import POOLING_CHOICES, TASKS, DataConfig, ModelConfig
from minidp.denoise.rmt import DEFAULT_KAPPA, DEFAULT_NORM_CORRECTION, NORM_CORRECTIONS
from minidp.run.federated.autoencoder import AUTOENCODER_KINDS
from minidp.run.federated.client import LocalSettings
from minidp.run.federated.codec import ENCODERS
from minidp.run.federated.config import (FedDenoiseConfig, FedEncoderConfig, FederatedConfig, FederationConfig,
                                     FedPrivacyConfig, FedRunConfig)
from minidp.run.federated.partition import PARTITIONS
from minidp.run.federated.run import run_federated
from minidp.optim import OPTIMIZERS


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
    m = parser.add_argument_group("model")
    m.add_argument("--model", required=True, metavar="DIR", help="HF checkpoint directory")
    m.add_argument("--lora-rank", type=int, default=4, metavar="R", help="LoRA rank r")
    m.add_argument("--lora-alpha", type=float, default=8.0, metavar="A", help="LoRA alpha (update scaled by A/r)")
    m.add_argument("--lora-targets", default="query,value", metavar="NAMES", help="comma-separated LoRA layers")
    m.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="training precision")
    m.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: $MINIDP_DEVICE or cpu")
    m.add_argument("--max-length", type=int, default=128, help="tokens per example after truncation")
    m.add_argument("--pooling", default=None, choices=POOLING_CHOICES, help="default: the checkpoint's")

    d = parser.add_argument_group("data")
    d.add_argument("--task", default="sst2", choices=TASKS, help="dataset (csv: any CSV/TSV, name the columns)")
    d.add_argument("--data", default=None, metavar="DIR", help="GLUE folder or the task's own folder")
    d.add_argument("--train-file", default=None, help="a training file instead of --data")
    d.add_argument("--eval-file", default=None, help="evaluation file (default: hold out --eval-fraction)")
    d.add_argument("--text-column", default=None, help="csv: the text column")
    d.add_argument("--label-column", default=None, help="csv: the label column")
    d.add_argument("--eval-fraction", type=float, default=0.1, help="held-out share without an eval file")
    d.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N eval examples only")

    f = parser.add_argument_group("federation")
    f.add_argument("--clients", type=int, default=100, help="K: clients sharing the training data")
    f.add_argument("--partition", default="iid", choices=PARTITIONS, help="iid, or label skew by Dirichlet(alpha)")
    f.add_argument("--dirichlet-alpha", type=float, default=0.5, help="Dirichlet concentration (small: skewed)")
    f.add_argument("--rounds", type=int, default=50, help="T: federated rounds")
    f.add_argument("--client-rate", type=float, default=0.1,
                   help="q: each client joins a round independently with this probability (Poisson)")
    f.add_argument("--local-steps", type=int, default=5, help="E: local (non-private) steps per sampled client")
    f.add_argument("--local-batch-size", type=int, default=16, help="examples per local step")
    f.add_argument("--local-lr", type=float, default=1e-3, help="local learning rate")
    f.add_argument("--local-optimizer", default="adam", choices=OPTIMIZERS, help="fresh state each round")
    f.add_argument("--server-lr", type=float, default=1.0, help="server step on the decoded average update")
    f.add_argument("--public-fraction", type=float, default=0.1,
                   help="share of the training split carved out as the PUBLIC split (every arm carves it, so all "
                   "arms' clients hold the same data; the encoder trains on it)")
    f.add_argument("--public-clients", type=int, default=8, help="stage 1: pseudo-clients on the public split")

    p = parser.add_argument_group("privacy (client level)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="client-level target ε; σ calibrated with RDP for all rounds (default 8 unless "
                   "--noise-multiplier or --non-private)")
    p.add_argument("--noise-multiplier", type=float, default=None, help="σ, instead of calibrating from ε")
    p.add_argument("--delta", type=float, default=None, help="δ (default 1/K², so K·δ = 1/K)")
    p.add_argument("--clip", type=float, default=0.1, help="C: bound on each client's whole contribution's L2 norm")
    p.add_argument("--non-private", action="store_true",
                   help="NOT PRIVATE reference: no clipping, σ = 0, nothing accounted; same sampling and divisor qK")

    e = parser.add_argument_group("encoder")
    e.add_argument("--encoder", default="none", choices=ENCODERS,
                   help="none: DP-FedAvg-LoRA; dr: DR-Encoder (trained on Gaussian draws from the public split's "
                   "per-layer statistics); fedcg: FedCG-style (trained on the public split's real updates)")
    e.add_argument("--ae-kind", default="linear", choices=AUTOENCODER_KINDS, help="auto-encoder architecture")
    e.add_argument("--latent", type=int, default=64, help="k: latent size per factor vector (compression d/k)")
    e.add_argument("--ae-hidden", type=int, default=128, help="mlp auto-encoder's hidden width")
    e.add_argument("--ae-steps", type=int, default=300, help="Adam steps of auto-encoder training")
    e.add_argument("--ae-lr", type=float, default=1e-2, help="auto-encoder learning rate")
    e.add_argument("--synthetic", type=int, default=4096, help="dr: synthetic vectors per auto-encoder")

    z = parser.add_argument_group("denoising (server-side post-processing: no privacy cost)")
    z.add_argument("--denoise", action="store_true",
                   help="RMT on the released aggregate, factor updates (or latents) stacked over layers")
    z.add_argument("--kappa", type=float, default=DEFAULT_KAPPA, help="keep singular values above κ × the edge")
    z.add_argument("--norm-correction", default=DEFAULT_NORM_CORRECTION, choices=NORM_CORRECTIONS,
                   help="rescaling of each denoised matrix")
    z.add_argument("--denoise-min-dim", type=int, default=3, help="skip matrices whose smaller side is below this")

    r = parser.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (refused if it holds a run)")
    r.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    r.add_argument("--seed", type=int, default=None,
                   help="reproducible draws (experiments only: NOT private against anyone who knows the seed)")
    r.add_argument("--eval-every", type=int, default=1, help="evaluate every N rounds (and after the last)")
    r.add_argument("--eval-batch-size", type=int, default=128, help="examples per evaluation forward pass")
    r.add_argument("--no-save-model", action="store_true", help="do not write RUN_DIR/model/")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    parser.set_defaults(func=run)


def config_from_args(args) -> FederatedConfig:
    epsilon = args.epsilon if (args.epsilon is not None or args.noise_multiplier is not None
                               or args.non_private) else 8.0
    return FederatedConfig(
        model=ModelConfig(path=args.model, trainable="lora", dtype=args.dtype, device=resolve_device(args.device),
                          max_length=args.max_length, pooling=args.pooling, lora_rank=args.lora_rank,
                          lora_alpha=args.lora_alpha, lora_targets=args.lora_targets),
        data=DataConfig(task=args.task, data_dir=args.data, train_file=args.train_file, eval_file=args.eval_file,
                        text_column=args.text_column, label_column=args.label_column,
                        eval_fraction=args.eval_fraction, eval_limit=args.eval_limit),
        federation=FederationConfig(clients=args.clients, partition=args.partition, alpha=args.dirichlet_alpha,
                                    rounds=args.rounds, sample_rate=args.client_rate, server_lr=args.server_lr,
                                    public_fraction=args.public_fraction, public_clients=args.public_clients),
        local=LocalSettings(steps=args.local_steps, batch_size=args.local_batch_size, lr=args.local_lr,
                            optimizer=args.local_optimizer),
        privacy=FedPrivacyConfig(epsilon=epsilon, noise_multiplier=args.noise_multiplier, delta=args.delta,
                                 max_grad_norm=args.clip, non_private=args.non_private),
        encoder=FedEncoderConfig(encoder=args.encoder, kind=args.ae_kind, latent=args.latent, hidden=args.ae_hidden,
                                 steps=args.ae_steps, lr=args.ae_lr, synthetic=args.synthetic),
        denoise=FedDenoiseConfig(denoise=args.denoise, kappa=args.kappa, norm_correction=args.norm_correction,
                                 min_dim=args.denoise_min_dim),
        run=FedRunConfig(out=args.out, seed=args.seed, eval_every=args.eval_every,
                         eval_batch_size=args.eval_batch_size, progress=not args.no_progress,
                         overwrite=args.overwrite, save_model=not args.no_save_model),
    )


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
