"""`minidp` command line: a thin argparse layer over the library.

Each subcommand lives in its own module under ``minidp/run/commands/`` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func(args) -> int`` as its
handler. Errors the user can fix (bad arguments, missing files) are raised as ``UsageError`` and
printed as one line, exit status 2 — never a traceback. Every float flag is parsed by
``commands.flags.finite_float`` (inf and nan refused); ``build_parser`` gives it to any flag still declared
``type=float``. A run that went non-finite (``RunFailed``) exits with its own status, 3.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from minidp.run.commands.flags import finite_float
from minidp.errors import MinidpError, RunFailed, RunInterrupted

# In the order `minidp --help` lists them.
COMMAND_MODULES = (
    "minidp.run.commands.demo",
    "minidp.run.commands.train",
    "minidp.run.commands.privacy",   # epsilon, sigma
    "minidp.run.commands.audit",
    "minidp.run.commands.federated",
)


class UsageError(MinidpError):
    """A problem with the user's input (argument, file, field): printed as one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported as one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="minidp",
        description="Differentially private fine-tuning of RoBERTa/BERT in NumPy/CuPy, "
        "with random-matrix-theory gradient denoising.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    for command in subparsers.choices.values():
        for action in command._actions:
            if action.type is float:  # a flag that forgot finite_float gets it here
                action.type = finite_float
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what was typed (``minidp train --resume`` refuses flags that contradict the saved run)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MinidpError as err:  # includes UsageError, DataError, ConfigError, PrivacyError
        print(f"minidp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as stop:
        print(f"minidp {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except RunFailed as failure:  # the run went non-finite: stopped, its directory marked FAILED
        print(f"minidp {args.command}: {failure}", file=sys.stderr)
        return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
