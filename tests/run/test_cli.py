"""minidp/run/cli.py: every float flag of every subcommand refuses inf and nan.

The test walks the parsers, so a flag added later is covered without being named here: its value is parsed
by minidp.run.commands.flags.finite_float, and `inf`, `-inf` and `nan` give one line naming the flag, exit 2.
"""
from __future__ import annotations

import argparse

import pytest

from minidp.run.cli import build_parser, main
from minidp.run.commands.flags import finite_float


def float_flags() -> list[tuple[str, str]]:
    """(subcommand, flag) of every option whose value is a float."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.type in (float, finite_float) and action.option_strings:
                found.append((command, action.option_strings[-1]))
    return found


FLAGS = float_flags()


def test_the_walk_finds_the_float_flags():
    assert {("train", "--clip"), ("train", "--lr"), ("epsilon", "--noise-multiplier"), ("sigma", "--epsilon"),
            ("audit", "--delta"), ("demo", "--epsilon")} <= set(FLAGS)
    assert all(command != "train" or flag != "--steps" for command, flag in FLAGS)  # ints are not floats


@pytest.mark.parametrize("command, flag", FLAGS, ids=[f"{c} {f}" for c, f in FLAGS])
def test_every_float_flag_refuses_inf_and_nan(command, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, wherever a command would write
    for value in ("inf", "-inf", "nan", "Infinity"):
        with pytest.raises(SystemExit) as stop:
            main([command, f"{flag}={value}", "--out", str(tmp_path / "run")] if command == "train" else
                 [command, f"{flag}={value}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2
        assert len(err) == 1 and flag in err[0] and "finite" in err[0], err
    assert not any(tmp_path.iterdir())


def test_finite_values_still_parse():
    assert finite_float("1e-5") == 1e-5 and finite_float("-3") == -3.0
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        finite_float("lots")
