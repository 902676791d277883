"""`minidp federated` end to end on the tiny random BERT: files, strict JSON, privacy, bad input, partitions."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from minidp.backend import to_host
from minidp.run.cli import build_parser, main
from minidp.run.config import DataConfig, ModelConfig
from minidp.errors import ConfigError
from minidp.run.federated import run as fed_run
from minidp.run.federated.client import LocalSettings, local_update
from minidp.run.federated.config import FederatedConfig, FederationConfig, FedPrivacyConfig, FedRunConfig
from minidp.run.federated.partition import partition
from models.lora import read_adapter
from tests.fixtures import write_tiny_bert, write_tiny_tsv


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("federated")
    write_tiny_bert(d / "model")
    write_tiny_tsv(d / "train.tsv", 120, seed=0)
    write_tiny_tsv(d / "dev.tsv", 40, seed=1)
    return d


def args(d: Path, out: Path, *extra) -> list:
    return ["federated", "--model", str(d / "model"), "--train-file", str(d / "train.tsv"),
            "--eval-file", str(d / "dev.tsv"), "--max-length", "16", "--clients", "6", "--rounds", "2",
            "--client-rate", "0.5", "--local-steps", "2", "--local-batch-size", "8", "--local-lr", "0.01",
            "--lora-rank", "2", "--latent", "4", "--ae-steps", "20", "--synthetic", "64", "--public-clients", "2",
            "--seed", "0", "--no-progress", "--out", str(out), *extra]


def strict_load(text: str):
    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def rows(path: Path) -> list:
    return [strict_load(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("encoder, extra", [("none", []), ("dr", ["--denoise"]), ("fedcg", [])])
def test_tiny_run(assets, tmp_path, encoder, extra):
    out = tmp_path / encoder
    assert main(args(assets, out, "--encoder", encoder, "--epsilon", "8", *extra)) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "metrics.jsonl", "metrics_nonprivate.jsonl", "model", "summary.json"]
    config = strict_load((out / "config.json").read_text())
    summary = strict_load((out / "summary.json").read_text())
    metrics, nonprivate = rows(out / "metrics.jsonl"), rows(out / "metrics_nonprivate.jsonl")
    assert [r["round"] for r in metrics] == [1, 2] and [r["round"] for r in nonprivate] == [1, 2]
    assert all("accuracy" in r["eval"] for r in metrics)
    assert all(r["bytes_per_client"] == summary["bytes_per_client"] for r in metrics)
    assert all(r["expected_bytes_per_round"] == pytest.approx(3 * r["bytes_per_client"]) for r in metrics)
    privacy = summary["privacy"]
    print(encoder, "eps rdp", privacy["epsilon_rdp"], "gdp", privacy["epsilon_gdp_approx"],
          "bytes", summary["bytes_per_client"], "acc", summary["final_eval"]["accuracy"])
    assert privacy["epsilon_rdp"] <= 8.0 and privacy["level"] == "client"
    assert metrics[-1]["epsilon_rdp"] == pytest.approx(privacy["epsilon_rdp"])
    assert privacy["delta"] == pytest.approx(1 / 36)
    assert "NOT an upper bound" in summary["statement"] and "client-level" in summary["statement"]
    assert config["encoder"]["encoder"] == encoder
    assert (out / "model" / "adapter_config.json").exists()
    if encoder == "none":
        assert summary["compression_ratio"] == 1.0 and summary["stage1"] == {}
        assert all(r["reconstruction_error_non_private"] is None for r in nonprivate)
    else:
        assert summary["compression_ratio"] > 1.0 and summary["stage1"]
        sampled = [r for r in nonprivate if r["clients_sampled"] > 0]
        assert all(r["reconstruction_error_non_private"] >= 0 for r in sampled)
    if "--denoise" in extra:
        assert all("denoise_kept_total" in r for r in metrics)
    assert any("reconstruction_error_non_private" in k for v in summary["output_privacy"].values() for k in v)


def test_same_seed_same_run(assets, tmp_path):
    for name in ("a", "b"):
        assert main(args(assets, tmp_path / name, "--encoder", "dr", "--no-save-model")) == 0
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()


def test_non_private_reference(assets, tmp_path):
    out = tmp_path / "np"
    assert main(args(assets, out, "--non-private", "--no-save-model")) == 0
    summary = strict_load((out / "summary.json").read_text())
    assert summary["privacy"]["private"] is False and summary["privacy"]["epsilon_rdp"] is None
    assert summary["statement"].startswith("NOT PRIVATE")
    assert all("epsilon_rdp" not in r for r in rows(out / "metrics.jsonl"))
    assert "no clipping" in summary["statement"] and summary["privacy"]["clipped"] is False
    assert all(r["clipped_fraction"] == 0.0 for r in rows(out / "metrics_nonprivate.jsonl") if r["clients_sampled"])
    clipped = tmp_path / "clipped"
    assert main(args(assets, clipped, "--non-private", "--clip-non-private", "--clip", "1e-6",
                     "--no-save-model")) == 0
    summary = strict_load((clipped / "summary.json").read_text())
    assert summary["statement"].startswith("NOT PRIVATE") and "clipped to C = 1e-06" in summary["statement"]
    assert summary["privacy"]["clipped"] is True and summary["privacy"]["epsilon_rdp"] is None
    sampled = [r for r in rows(clipped / "metrics_nonprivate.jsonl") if r["clients_sampled"]]
    assert sampled and all(r["clipped_fraction"] == 1.0 for r in sampled)


BAD = {
    "no clients": (["--clients", "0"], "--clients"),
    "rate above 1": (["--client-rate", "1.5"], "--client-rate"),
    "nan epsilon": (["--epsilon", "nan"], "--epsilon"),
    "inf clip": (["--clip", "inf"], "--clip"),
    "zero local steps": (["--local-steps", "0"], "--local-steps"),
    "zero latent": (["--latent", "0"], "--latent"),
    "epsilon and sigma": (["--epsilon", "3", "--noise-multiplier", "1"], "not both"),
    "non-private with epsilon": (["--non-private", "--epsilon", "3"], "--non-private"),
    "more clients than examples": (["--clients", "5000"], "--clients"),
    "public fraction 1": (["--public-fraction", "1"], "--public-fraction"),
    "unknown encoder": (["--encoder", "vae"], "--encoder"),
    "delta 0": (["--delta", "0"], "--delta"),
    "denoise without noise": (["--non-private", "--denoise"], "--denoise"),
    "clipped reference without --non-private": (["--clip-non-private"], "--clip-non-private"),
    "not a number": (["--rounds", "many"], "--rounds"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(assets, case, capsys):
    extra, expected = BAD[case]
    out = assets / "bad_out"
    if out.exists():
        shutil.rmtree(out)
    try:
        code = main(args(assets, out, *extra))
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    print(case, "->", err)
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not out.exists()


def test_missing_model_and_occupied_out(assets, tmp_path, capsys):
    assert main(["federated", "--model", str(assets / "nowhere"), "--train-file", str(assets / "train.tsv"),
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert not (tmp_path / "x").exists()
    out = tmp_path / "done"
    assert main(args(assets, out, "--no-save-model", "--rounds", "1")) == 0
    capsys.readouterr()
    assert main(args(assets, out, "--no-save-model", "--rounds", "1")) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_every_flag_has_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["federated"]
    missing = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
    assert not missing, missing
    flags = {s for a in sub._actions for s in a.option_strings}
    for flag in ("--clients", "--rounds", "--client-rate", "--local-steps", "--epsilon", "--noise-multiplier",
                 "--encoder", "--latent", "--denoise", "--partition", "--dirichlet-alpha"):
        assert flag in flags


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partition_covers_every_example_once(scheme):
    labels = np.random.default_rng(0).integers(0, 3, size=500)
    shards = partition(labels, clients=7, scheme=scheme, alpha=0.3, rng=np.random.default_rng(1))
    assert len(shards) == 7
    together = np.sort(np.concatenate(shards))
    np.testing.assert_array_equal(together, np.arange(500))
    if scheme == "iid":
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_dirichlet_skews_labels():
    labels = np.repeat([0, 1], 1000)
    skewed = partition(labels, clients=10, scheme="dirichlet", alpha=0.05, rng=np.random.default_rng(2))
    even = partition(labels, clients=10, scheme="dirichlet", alpha=1000.0, rng=np.random.default_rng(2))

    def mean_majority(shards):
        return np.mean([max(np.mean(labels[s] == 0), np.mean(labels[s] == 1)) for s in shards if len(s)])

    print("majority share: alpha 0.05", mean_majority(skewed), "alpha 1000", mean_majority(even))
    assert mean_majority(skewed) > 0.9 > 0.6 > mean_majority(even)


def test_partition_bad_arguments():
    with pytest.raises(ConfigError):
        partition([0, 1], clients=0, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError):
        partition([0, 1], clients=2, scheme="shards", rng=np.random.default_rng(0))
    with pytest.raises(ConfigError):
        partition([0, 1], clients=2, scheme="dirichlet", alpha=0.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("clip_non_private", [False, True])
def test_one_client_every_round_is_its_local_training(assets, tmp_path, clip_non_private):
    """K = 1, q = 1, no noise, η_s = 1: the global adapter after a round is the client's own local result
    (Δ / qK = Δ), which pins the sign and the divisor of the server step; with --clip-non-private and C half
    the update's whole norm, it is the clipped result Δ·C/‖Δ‖ (clipping the whole update, not per matrix)."""
    config = FederatedConfig(
        model=ModelConfig(path=str(assets / "model"), trainable="lora", dtype="float64", max_length=16,
                          lora_rank=2, lora_alpha=4.0),
        data=DataConfig(task="sst2", train_file=str(assets / "train.tsv"), eval_file=str(assets / "dev.tsv")),
        federation=FederationConfig(clients=1, rounds=1, sample_rate=1.0, public_clients=1),
        local=LocalSettings(steps=3, batch_size=8, lr=0.05),
        privacy=FedPrivacyConfig(epsilon=None, non_private=True),
        run=FedRunConfig(out=str(tmp_path / "one"), seed=5, progress=False))
    fed = fed_run.build(config, log=lambda *_: None)
    initial = {n: fed.model.params[n].copy() for n in fed.model.trainable}
    update, _ = local_update(fed.model, fed.client_data, fed.shards[0], initial, config.local, fed.local_rng)
    scale = 1.0
    if clip_non_private:
        norm = float(np.sqrt(sum(float((to_host(v) ** 2).sum()) for v in update.values())))
        scale = 0.5 * norm / (norm + 1e-6)  # the flat rule min(1, C / (‖Δ‖ + 1e-6)), C = ‖Δ‖/2
        config = dataclasses.replace(config, privacy=FedPrivacyConfig(
            epsilon=None, non_private=True, clip_non_private=True, max_grad_norm=0.5 * norm))
    fed_run.run_federated(config, log=lambda *_: None)
    _, saved = read_adapter(tmp_path / "one" / "model")
    factors = [n for n in update if n.endswith(("lora_A.weight", "lora_B.weight"))]
    assert factors and all(n in saved for n in factors)
    worst = max(float(np.abs(saved[n] - to_host(initial[n] + scale * update[n])).max()) for n in factors)
    moved = max(float(np.abs(to_host(update[n])).max()) for n in factors)
    print(f"max |saved - (initial + Δ)| = {worst:.1e}; the update moved entries by up to {moved:.1e}")
    assert moved > 1e-3 and worst < 1e-12
