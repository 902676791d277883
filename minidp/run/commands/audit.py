"""`minidp audit`: an empirical lower bound on ε beside the accountants' upper bounds (minidp/run/audit/).

    minidp audit --mechanism gaussian --epsilon 2 [--json]          # the bare Gaussian mechanism
    minidp audit --mechanism dpsgd --epsilon 3 [--model tiny|minilm|PATH] [--denoise]
    minidp audit --mechanism dpsgd --epsilon 2 --no-clip --canary-norm 10     # a broken mechanism: caught

Exit status: 0 when the audit is consistent with the accountant, 1 when it shows a violation
(ε_lower > the accountant's ε), 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from minidp.run.audit import MECHANISMS, audit_dpsgd, audit_gaussian
from minidp.run.commands.flags import finite_float
from minidp.errors import ConfigError
from minidp.optim import OPTIMIZERS
from minidp.privacy.accountant import ACCOUNTANTS

# Defaults that differ between the mechanisms.
DEFAULT_CANARIES = {"gaussian": 1000, "dpsgd": 500}
DEFAULT_RUNS = {"gaussian": 2000, "dpsgd": 20}
DPSGD_ONLY = ("model", "examples", "max_length", "sample_rate", "steps", "canary_param", "denoise", "optimizer",
              "lr", "max_physical_batch")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "audit", help="empirical lower bound on epsilon (planted canaries) beside the accountants' epsilon",
        description="Plant gradient canaries (each included with probability 1/2), run the mechanism, attack "
                    "the released gradients, and turn the attack into a lower bound on epsilon at the given "
                    "confidence (one-run bound of Steinke et al. 2023; Clopper-Pearson over runs). Exit status "
                    "1 when the lower bound exceeds the accountant's epsilon (a violation).")
    p.add_argument("--mechanism", choices=MECHANISMS, required=True,
                   help="gaussian: the bare Gaussian mechanism, one noisy sum per run (calibration); "
                        "dpsgd: the real DP-SGD step on a model")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--epsilon", type=finite_float, metavar="E",
                        help="target epsilon: the noise multiplier is calibrated to it with --accountant")
    target.add_argument("--noise-multiplier", type=finite_float, metavar="S",
                        help="noise std / clipping norm, given directly (0: no noise, a broken mechanism)")
    p.add_argument("--delta", type=finite_float, default=1e-5, metavar="D", help="delta (default 1e-5)")
    p.add_argument("--accountant", choices=ACCOUNTANTS, default="pld",
                   help="accountant that calibrates sigma and is held against the audit (default pld); "
                        "both accountants' epsilon are reported")
    p.add_argument("--canaries", type=int, metavar="M",
                   help="canaries per run (default 1000 gaussian, 500 dpsgd)")
    p.add_argument("--runs", type=int, metavar="R", help="independent runs (default 2000 gaussian, 20 dpsgd)")
    p.add_argument("--canary-norm", type=finite_float, default=1.0, metavar="A",
                   help="gradient norm of a canary in units of the clipping norm C (default 1)")
    p.add_argument("--no-clip", action="store_true",
                   help="FAULT INJECTION: the canaries' gradients skip clipping (the accountant still assumes "
                        "sensitivity C); use with --canary-norm > 1 to check that the audit catches it")
    p.add_argument("--confidence", type=finite_float, default=0.95, metavar="C",
                   help="confidence of the lower bound (default 0.95)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of bits, sampling and noise (default: fresh)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    d = p.add_argument_group("dpsgd only")
    d.add_argument("--model", metavar="M", help="tiny (default: random BERT, width 16), minilm (the installed "
                                                "MiniLM checkpoint) or a Hugging Face checkpoint folder")
    d.add_argument("--examples", type=int, metavar="N", help="real (random-token) training examples (default 64)")
    d.add_argument("--max-length", type=int, metavar="T", help="tokens per example (default 16)")
    d.add_argument("--sample-rate", type=finite_float, metavar="Q", help="Poisson sampling rate q (default 0.5)")
    d.add_argument("--steps", type=int, metavar="K", help="DP-SGD steps per run (default 10)")
    d.add_argument("--canary-param", metavar="NAME",
                   help="parameter holding the canaries (default: unused position-embedding rows); e.g. a "
                        "linear weight to put them through the denoiser")
    d.add_argument("--denoise", action="store_true", default=None,
                   help="RMT-denoise the released gradient; the attacker sees the denoised one")
    d.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default sgd)")
    d.add_argument("--lr", type=finite_float, metavar="LR", help="learning rate (default 0.1)")
    d.add_argument("--max-physical-batch", type=int, metavar="B", help="virtual batch size (default 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mech = args.mechanism
    common = dict(epsilon=args.epsilon, noise_multiplier=args.noise_multiplier, delta=args.delta,
                  accountant=args.accountant, canary_norm=args.canary_norm, clip=not args.no_clip,
                  confidence=args.confidence, seed=args.seed,
                  canaries=args.canaries if args.canaries is not None else DEFAULT_CANARIES[mech],
                  runs=args.runs if args.runs is not None else DEFAULT_RUNS[mech])
    if args.epsilon is not None and not (args.epsilon > 0 and math.isfinite(args.epsilon)):
        raise ConfigError(f"--epsilon must be a finite number > 0, got {args.epsilon}")
    extra = {name: getattr(args, name) for name in DPSGD_ONLY if getattr(args, name) is not None}
    if mech == "gaussian":
        if extra:
            flags = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise ConfigError(f"{flags}: for --mechanism dpsgd only")
        result = audit_gaussian(**common)
    else:
        log = None if args.json else (lambda msg: print(f"minidp audit: {msg}", file=sys.stderr))
        result = audit_dpsgd(**common, **extra, log=log)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(report(result))
    return 1 if result.violation else 0


def report(r) -> str:
    """The human-readable summary of an AuditResult."""
    clip = "clipped" if r.clipping else "NOT clipped (fault injection)"
    what = "the bare Gaussian mechanism" if r.mechanism == "gaussian" else \
        f"DP-SGD on model {r.model}, canaries in {r.canary_param}" + (", denoised" if r.denoise else "")
    cp = "n/a (canaries not independent)" if r.epsilon_lower_clopper_pearson is None else \
        f"{r.epsilon_lower_clopper_pearson:.3f}"
    lines = [
        f"audit of {what}: {r.runs} run(s) x {r.canaries // r.runs} canaries of norm {r.canary_norm:g} C ({clip}); "
        f"noise multiplier {r.noise_multiplier:.4g}, sample rate {r.sample_rate:g}, {r.steps} step(s), "
        f"delta {r.delta:g}",
        f"  epsilon lower bound  {r.epsilon_lower:.3f}   ({r.confidence:.0%} confidence; one-run "
        f"{r.epsilon_lower_one_run:.3f} from {r.correct} of {r.guesses} guesses right on {r.one_run_canaries} "
        f"canaries; Clopper-Pearson {cp})",
        f"  epsilon PLD          {r.epsilon_pld:.3f}" + ("   <- the accountant" if r.accountant == "pld" else ""),
        f"  epsilon RDP          {r.epsilon_rdp:.3f}" + ("   <- the accountant" if r.accountant == "rdp" else ""),
    ]
    if r.violation:
        lines.append(f"VIOLATION: epsilon_lower {r.epsilon_lower:.3f} > the accountant's epsilon "
                     f"{r.epsilon_accountant:.3f}: the mechanism leaks more than it accounts for")
    else:
        lines.append(f"no violation: epsilon_lower <= the accountant's epsilon ({r.seconds:.1f} s)")
    return "\n".join(lines)
