"""The old public paths of the runner's modules still work: `python -m minidp.cli` (what a running study
launches) and the re-exports scripts import (minidp.train, minidp.config, minidp.plots, minidp.checkpoint,
minidp.commands.train, minidp.commands.demo) are the objects of minidp/run/."""
from __future__ import annotations

import subprocess
import sys

import minidp.checkpoint
import minidp.cli
import minidp.commands.demo
import minidp.commands.train
import minidp.config
import minidp.plots
import minidp.train
from minidp.run import checkpoint, cli, config, plots, train
from minidp.run.commands import demo as demo_command
from minidp.run.commands import train as train_command


def test_re_exports_are_the_moved_objects():
    pairs = [(minidp.cli.main, cli.main), (minidp.cli.build_parser, cli.build_parser),
             (minidp.train.train, train.train), (minidp.train.plan_privacy, train.plan_privacy),
             (minidp.config.TrainConfig, config.TrainConfig), (minidp.plots.plot_spectrum, plots.plot_spectrum),
             (minidp.checkpoint.has_checkpoint, checkpoint.has_checkpoint),
             (minidp.commands.train.config_from_args, train_command.config_from_args),
             (minidp.commands.demo.DEMO_DEFAULTS, demo_command.DEMO_DEFAULTS)]
    assert all(old is new for old, new in pairs)


def test_python_m_minidp_cli_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "minidp.cli", "epsilon", "--noise-multiplier", "1.0",
                           "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("epsilon = 2.10137 at delta = 1e-05"), proc.stdout
    bad = subprocess.run([sys.executable, "-m", "minidp.cli", "epsilon", "--noise-multiplier", "nan",
                          "--sample-rate", "0.01", "--steps", "10"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--noise-multiplier" in bad.stderr, bad.stderr
