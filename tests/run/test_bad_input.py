"""Bad input to `minidp train`: one line naming the file/flag/field, exit status 2, no traceback,
and no run directory left behind."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minidp.run.cli import main
from tests.fixtures import write_tiny_bert, write_tiny_tsv


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    model = write_tiny_bert(folder / "model")
    data = write_tiny_tsv(folder / "train.tsv", 60)
    (folder / "empty.tsv").write_text("")
    (folder / "header.tsv").write_text("sentence\tlabel\n")
    (folder / "label7.tsv").write_text("sentence\tlabel\ngood movie\t7\nbad movie\t0\n")
    (folder / "labelx.tsv").write_text("sentence\tlabel\ngood movie\tpositive\nbad movie\t0\n")
    broken = {"no_config": "config.json", "no_weights": "model.safetensors", "no_tokenizer": "vocab.txt"}
    for name, missing in broken.items():
        shutil.copytree(model, folder / name)
        (folder / name / missing).unlink()
    shutil.copytree(model, folder / "bad_config")
    (folder / "bad_config" / "config.json").write_text("{not json")
    shutil.copytree(model, folder / "truncated")
    weights = folder / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return folder


def args(folder: Path, **over):
    base = {"--model": str(folder / "model"), "--task": "csv", "--train-file": str(folder / "train.tsv"),
            "--text-column": "sentence", "--label-column": "label", "--steps": "2", "--batch-size": "8",
            "--max-length": "16", "--out": str(folder / "out")}
    base.update(over)
    argv = ["train", "--no-progress"]
    for flag, value in base.items():
        if value is not None:
            argv += [flag, value]
    return argv


CASES = {  # name: (overrides, a piece of the message)
    "missing data file": ({"--train-file": "{d}/nope.tsv"}, "nope.tsv: no such file"),
    "empty data file": ({"--train-file": "{d}/empty.tsv"}, "empty.tsv: empty file"),
    "header-only data file": ({"--train-file": "{d}/header.tsv"}, "header.tsv: no examples"),
    "missing text column": ({"--text-column": "text"}, "no column 'text'"),
    "missing label column": ({"--label-column": "y"}, "no column 'y'"),
    "label outside the classes": ({"--task": "sst2", "--train-file": "{d}/label7.tsv"}, "label '7'"),
    "label not parseable": ({"--task": "sst2", "--train-file": "{d}/labelx.tsv"}, "label 'positive'"),
    "batch larger than the data": ({"--batch-size": "1000"}, "--batch-size"),
    "epsilon <= 0": ({"--epsilon": "0"}, "--epsilon"),
    "delta outside (0, 1)": ({"--delta": "1.5"}, "--delta"),
    "clip <= 0": ({"--clip": "-1"}, "--clip"),
    "kappa < 1": ({"--kappa": "0.9"}, "--kappa"),
    "steps <= 0": ({"--steps": "0"}, "--steps"),
    "epochs <= 0": ({"--steps": None, "--epochs": "0"}, "--epochs"),
    "max-length below 3": ({"--max-length": "2"}, "--max-length"),
    "max-length past the position table": ({"--max-length": "65"}, "position table"),
    "model without config.json": ({"--model": "{d}/no_config"}, "config.json"),
    "model without weights": ({"--model": "{d}/no_weights"}, "model.safetensors"),
    "model without tokenizer files": ({"--model": "{d}/no_tokenizer"}, "no_tokenizer"),
    "corrupt config.json": ({"--model": "{d}/bad_config"}, "config.json: not valid JSON"),
    "truncated safetensors": ({"--model": "{d}/truncated"}, "model.safetensors"),
    "resume without a checkpoint": ({"--resume": "{d}/model", "--model": None}, "no checkpoint"),
    "not a number": ({"--epsilon": "lots"}, "--epsilon"),
    "infinite clip norm": ({"--clip": "inf"}, "argument --clip: must be a finite number"),  # the non-finite-run fix
    "nan learning rate": ({"--lr": "nan"}, "argument --lr: must be a finite number"),
    "infinite epsilon": ({"--epsilon": "inf"}, "--epsilon"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(assets, case, capsys):
    over, expected = CASES[case]
    over = {k: (v.format(d=assets) if v is not None else None) for k, v in over.items()}
    out = assets / "out"
    if out.exists():
        shutil.rmtree(out)
    try:
        code = main(args(assets, **over))
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    print(case, "->", err)
    assert code == 2
    assert len(err) == 1 and expected in err[0], err
    assert "Traceback" not in err[0]
    assert not out.exists(), "a run directory was left behind"


def test_undecodable_bytes_are_replaced_and_counted(assets, capsys):
    lines = (assets / "train.tsv").read_bytes().splitlines(keepends=True)
    path = assets / "bytes.tsv"
    path.write_bytes(lines[0] + b"good \xd1 movie\t1\n" + b"".join(lines[1:]))
    out = assets / "bytes_run"
    assert main(args(assets, **{"--train-file": str(path), "--out": str(out)})) == 0
    assert "1 row(s) held bytes that are not UTF-8" in capsys.readouterr().out
