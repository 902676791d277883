"""`minidp epsilon` / `minidp sigma` through minidp.run.cli.main (output, JSON, errors and exit codes)."""
from __future__ import annotations

import json
import math

import pytest

from minidp.run.cli import main
from minidp.privacy import RDPAccountant


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_epsilon_json(capsys):
    code, out, err = run(capsys, "epsilon", "--noise-multiplier", "1.0", "--sample-rate", "0.01",
                         "--steps", "1000", "--delta", "1e-5", "--json")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert abs(result["epsilon"] - 2.1014) < 1e-4 and result["order"] == 7.8 and result["delta"] == 1e-5
    assert result["steps"] == 1000 and result["sample_rate"] == 0.01


def test_epsilon_human_readable(capsys):
    code, out, _ = run(capsys, "epsilon", "--noise-multiplier", "1.0", "--sample-rate", "0.01",
                       "--steps", "1000", "--delta", "1e-5")
    assert code == 0 and "epsilon = 2.1013" in out and "order 7.8" in out


def test_epsilon_from_batch_size_and_epochs(capsys):
    code, out, _ = run(capsys, "epsilon", "--noise-multiplier", "0.9", "--batch-size", "256",
                       "--dataset-size", "67349", "--epochs", "3", "--delta", "1e-5", "--json")
    result = json.loads(out)
    q = 256 / 67349
    assert code == 0 and result["sample_rate"] == q and result["steps"] == math.ceil(3 / q)
    acc = RDPAccountant()
    acc.step(noise_multiplier=0.9, sample_rate=q, steps=math.ceil(3 / q))
    assert result["epsilon"] == acc.get_epsilon(1e-5)


def test_sigma_json_meets_target(capsys):
    code, out, _ = run(capsys, "sigma", "--epsilon", "3", "--sample-rate", "0.01", "--steps", "1000",
                       "--delta", "1e-5", "--json")
    result = json.loads(out)
    assert code == 0 and 0.99 * 3 <= result["epsilon"] <= 3
    acc = RDPAccountant()
    acc.step(noise_multiplier=result["noise_multiplier"], sample_rate=0.01, steps=1000)
    assert acc.get_epsilon(1e-5) == result["epsilon"]


def test_sigma_human_readable(capsys):
    code, out, _ = run(capsys, "sigma", "--epsilon", "8", "--batch-size", "512", "--dataset-size", "60000",
                       "--epochs", "2", "--delta", "1e-5")
    assert code == 0 and out.startswith("noise multiplier = ")


@pytest.mark.parametrize("argv,name", [
    (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "0"], "--delta"),
    (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "1"], "--delta"),
    (["epsilon", "--noise-multiplier", "1", "--sample-rate", "1.5", "--steps", "10", "--delta", "1e-5"],
     "--sample-rate"),
    (["epsilon", "--noise-multiplier", "-1", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"],
     "--noise-multiplier"),
    (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "-3", "--delta", "1e-5"], "--steps"),
    (["sigma", "--epsilon", "0", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"], "--epsilon"),
    (["sigma", "--epsilon", "-2", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"], "--epsilon"),
    (["sigma", "--epsilon", "1e-9", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5"],
     "not reachable"),
    (["sigma", "--epsilon", "1", "--sample-rate", "0.1", "--steps", "10", "--epochs", "2", "--delta", "1e-5"],
     "not both"),
    (["sigma", "--epsilon", "1", "--batch-size", "10", "--epochs", "2", "--delta", "1e-5"], "--dataset-size"),
    (["epsilon", "--noise-multiplier", "1", "--delta", "1e-5"], "--sample-rate"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, name):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"minidp {argv[0]}: error:") and name in err, err


def test_missing_required_flag_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sigma", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"])
    assert exc.value.code == 2


def test_epsilon_and_sigma_with_the_pld_accountant(capsys):
    code, out, _ = run(capsys, "epsilon", "--noise-multiplier", "1.0", "--sample-rate", "0.01", "--steps", "1000",
                       "--delta", "1e-5", "--accountant", "pld", "--json")
    result = json.loads(out)
    assert code == 0 and result["accountant"] == "pld" and result["order"] is None
    assert abs(result["epsilon"] - 1.8282) < 1e-3
    code, out, _ = run(capsys, "epsilon", "--noise-multiplier", "1.0", "--sample-rate", "0.01", "--steps", "1000",
                       "--delta", "1e-5", "--accountant", "pld")
    assert code == 0 and "epsilon = 1.828" in out and "privacy loss distribution" in out
    code, out, _ = run(capsys, "sigma", "--epsilon", "2", "--sample-rate", "0.01", "--steps", "1000",
                       "--delta", "1e-5", "--accountant", "pld", "--json")
    result = json.loads(out)
    assert code == 0 and 0.99 * 2 <= result["epsilon"] <= 2 and result["accountant"] == "pld"


def test_unknown_accountant_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "1e-5",
              "--accountant", "moments"])
    assert exc.value.code == 2 and "--accountant" in capsys.readouterr().err
