"""`minidp epsilon` and `minidp sigma`: the accountant from the command line.

    minidp epsilon --noise-multiplier 1.0 --sample-rate 0.01 --steps 1000 --delta 1e-5 [--json]
    minidp sigma   --epsilon 3.0 --batch-size 256 --dataset-size 67349 --epochs 3 --delta 1e-5
    minidp epsilon ... --accountant pld      # the privacy loss distribution: tight (RDP is the default)

Either (--sample-rate, --steps) or (--batch-size, --dataset-size, --epochs), with q = B/N and
steps = ceil(E/q) (E epochs of Poisson steps with expected batch B).
"""
from __future__ import annotations

import argparse
import json
import math
import warnings

from minidp.errors import PrivacyError
from minidp.run.commands.flags import finite_float
from minidp.privacy.accountant import ACCOUNTANTS, get_noise_multiplier, make_accountant


def add_parser(subparsers) -> None:
    eps = subparsers.add_parser(
        "epsilon", help="epsilon spent by DP-SGD with a given noise multiplier",
        description="Epsilon (at delta) of STEPS Poisson-subsampled Gaussian steps (RDP or PLD accountant).")
    eps.add_argument("--noise-multiplier", type=finite_float, required=True, metavar="S",
                     help="noise std / clipping norm (sigma)")
    _add_common(eps)
    eps.set_defaults(func=run_epsilon)

    sig = subparsers.add_parser(
        "sigma", help="smallest noise multiplier that reaches a target epsilon",
        description="Smallest noise multiplier whose epsilon (at delta) is at most --epsilon.")
    sig.add_argument("--epsilon", type=finite_float, required=True, metavar="E", help="target epsilon (> 0)")
    _add_common(sig)
    sig.set_defaults(func=run_sigma)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delta", type=finite_float, required=True, metavar="D", help="target delta in (0, 1)")
    parser.add_argument("--sample-rate", type=finite_float, metavar="Q", help="Poisson sampling rate q in [0, 1]")
    parser.add_argument("--steps", type=int, metavar="N", help="number of steps")
    parser.add_argument("--batch-size", type=int, metavar="B", help="expected batch size (q = B / N)")
    parser.add_argument("--dataset-size", type=int, metavar="N", help="number of training examples")
    parser.add_argument("--epochs", type=finite_float, metavar="E", help="epochs (steps = ceil(E / q))")
    parser.add_argument("--accountant", choices=ACCOUNTANTS, default="rdp",
                        help="rdp: Renyi DP (default); pld: privacy loss distribution, tight (smaller "
                             "epsilon for the same noise), slower")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _rate_and_steps(args: argparse.Namespace) -> tuple[float, int]:
    """(q, steps) from either --sample-rate/--steps or --batch-size/--dataset-size/--epochs."""
    direct = args.sample_rate is not None or args.steps is not None
    derived = any(v is not None for v in (args.batch_size, args.dataset_size, args.epochs))
    if direct and derived:
        raise PrivacyError("give either --sample-rate and --steps, or --batch-size, --dataset-size "
                           "and --epochs, not both")
    if derived:
        for flag, value in (("--batch-size", args.batch_size), ("--dataset-size", args.dataset_size),
                            ("--epochs", args.epochs)):
            if value is None:
                raise PrivacyError(f"{flag} is required with --batch-size/--dataset-size/--epochs")
        if args.dataset_size <= 0:
            raise PrivacyError(f"--dataset-size must be > 0, got {args.dataset_size}")
        if not 0 < args.batch_size <= args.dataset_size:
            raise PrivacyError(f"--batch-size must be in [1, --dataset-size], got {args.batch_size}")
        if not (args.epochs >= 0 and math.isfinite(args.epochs)):
            raise PrivacyError(f"--epochs must be a finite number >= 0, got {args.epochs}")
        q = args.batch_size / args.dataset_size
        return q, math.ceil(args.epochs / q)
    if args.sample_rate is None or args.steps is None:
        raise PrivacyError("give --sample-rate and --steps (or --batch-size, --dataset-size and --epochs)")
    if not 0.0 <= args.sample_rate <= 1.0:
        raise PrivacyError(f"--sample-rate must be in [0, 1], got {args.sample_rate}")
    if args.steps < 0:
        raise PrivacyError(f"--steps must be >= 0, got {args.steps}")
    return args.sample_rate, args.steps


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise PrivacyError(f"--delta must be in (0, 1), got {delta}")


def run_epsilon(args: argparse.Namespace) -> int:
    _check_delta(args.delta)
    if not (args.noise_multiplier >= 0 and math.isfinite(args.noise_multiplier)):
        raise PrivacyError(f"--noise-multiplier must be a finite number >= 0, got {args.noise_multiplier}")
    q, steps = _rate_and_steps(args)
    acc = make_accountant(args.accountant)
    acc.step(noise_multiplier=args.noise_multiplier, sample_rate=q, steps=steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eps, order = acc.get_epsilon_and_order(args.delta)
    notes = [str(w.message) for w in caught]
    order = None if math.isnan(order) else order          # a PLD has no Renyi order
    if args.json:
        print(json.dumps({"epsilon": eps, "order": order, "accountant": args.accountant, "delta": args.delta,
                          "noise_multiplier": args.noise_multiplier, "sample_rate": q, "steps": steps,
                          "warnings": notes}))
    else:
        how = f"Renyi order {order:g}" if order is not None else "privacy loss distribution"
        print(f"epsilon = {eps:.6g} at delta = {args.delta:g} ({how}) for {steps} steps "
              f"with noise multiplier {args.noise_multiplier:g} and sample rate {q:.6g}")
        for note in notes:
            print(f"warning: {note}")
    return 0


def run_sigma(args: argparse.Namespace) -> int:
    _check_delta(args.delta)
    if not (args.epsilon > 0 and math.isfinite(args.epsilon)):
        raise PrivacyError(f"--epsilon must be a finite number > 0, got {args.epsilon}")
    q, steps = _rate_and_steps(args)
    sigma = get_noise_multiplier(args.epsilon, args.delta, q, steps, accountant=args.accountant)
    acc = make_accountant(args.accountant)
    acc.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the achieved epsilon is a check, not a result
        eps, order = acc.get_epsilon_and_order(args.delta)
    order = None if math.isnan(order) else order
    if args.json:
        print(json.dumps({"noise_multiplier": sigma, "epsilon": eps, "order": order,
                          "accountant": args.accountant, "target_epsilon": args.epsilon, "delta": args.delta,
                          "sample_rate": q, "steps": steps}))
    else:
        print(f"noise multiplier = {sigma:.6g} gives epsilon = {eps:.6g} <= {args.epsilon:g} at delta = "
              f"{args.delta:g} for {steps} steps with sample rate {q:.6g} ({args.accountant.upper()} accountant)")
    return 0
