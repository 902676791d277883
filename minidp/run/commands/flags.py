"""Value types shared by every subcommand's flags.

A float flag must be a finite number: `--clip inf` would state a guarantee for C = ∞, `--lr nan` would
train into NaN. ``finite_float`` refuses inf and nan while argparse parses, so the error is one line
naming the flag (exit status 2) and nothing has been read or written yet. ``minidp.run.cli.build_parser``
gives it to any flag still declared ``type=float``, so a new flag cannot forget it.
"""
from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """float(text), refusing inf, -inf and nan (argparse reports: argument --FLAG: <message>)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value
