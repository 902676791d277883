"""`minidp train --trainable lora` end to end on a tiny random BERT: what RUN_DIR/model holds, and that
peft / transformers load it with minidp's logits (the adapter by default, a plain model with --merge-lora)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidp.run.cli import main
from minidp.data import load_tokenizer
from models import load_pretrained
from tests.fixtures import tiny_sentences, write_tiny_bert, write_tiny_tsv
from tests.helpers import require_module
from tests.oracle.hf_models import max_rel_diff, torch_logits


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora_train")
    return write_tiny_bert(folder / "model", init_std=0.2), write_tiny_tsv(folder / "train.tsv", 96)


def _train(assets, out, *extra):
    model, data = assets
    return main(["train", "--model", str(model), "--task", "csv", "--train-file", str(data), "--text-column",
                 "sentence", "--label-column", "label", "--epsilon", "8", "--steps", "3", "--batch-size", "24",
                 "--max-physical-batch", "8", "--max-length", "16", "--lr", "0.05", "--seed", "3",
                 "--no-progress", "--trainable", "lora", "--lora-rank", "2", "--lora-alpha", "4",
                 "--lora-targets", "query,value,output.dense", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def runs(assets, tmp_path_factory):
    """Two identical seeded LoRA runs: one saves the PEFT adapter, one the merged model."""
    root = tmp_path_factory.mktemp("runs")
    assert _train(assets, root / "adapter") == 0
    assert _train(assets, root / "merged", "--merge-lora") == 0
    return root / "adapter" / "model", root / "merged" / "model"


def _batch(model_dir):
    texts, labels = tiny_sentences(6, seed=9)
    enc = load_tokenizer(model_dir)(texts, max_length=16)
    return {"input_ids": np.asarray(enc["input_ids"]), "attention_mask": np.asarray(enc["attention_mask"]),
            "token_type_ids": np.asarray(enc["token_type_ids"]), "labels": labels}


def test_run_saves_a_peft_adapter_that_peft_loads(assets, runs):
    torch = require_module("torch")
    peft = require_module("peft")
    transformers = require_module("transformers")
    base_dir, (adapter, _) = assets[0], runs
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["modules_to_save"]) == (2, 4, ["classifier"])  # PEFT's set
    assert not (adapter / "model.safetensors").exists()
    ours = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": adapter}, verbose=False)
    assert any(ours.params[n].any() for n in ours.params if ".lora_B." in n)  # the run moved B away from 0
    batch = _batch(base_dir)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_dir, dtype=torch.float64, attn_implementation="eager")
    reloaded = peft.PeftModel.from_pretrained(base, adapter).eval()
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    diff = max_rel_diff(ours.forward(**kwargs), torch_logits(reloaded, batch))
    print(f"trained adapter -> peft logits max relative difference {diff:.2e}")
    assert diff <= 1e-6  # the adapter is saved in the run's float32


def test_merge_lora_run_loads_in_transformers(assets, runs):
    torch = require_module("torch")
    transformers = require_module("transformers")
    base_dir, (adapter, merged) = assets[0], runs
    assert (merged / "config.json").exists() and not (merged / "adapter_config.json").exists()
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        merged, dtype=torch.float64, attn_implementation="eager").eval()
    ours = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": adapter}, verbose=False)
    batch = _batch(base_dir)
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    diff = max_rel_diff(torch_logits(hf, batch), ours.forward(**kwargs))
    print(f"--merge-lora model -> transformers vs the same run's adapter: {diff:.2e}")
    assert diff <= 1e-5  # both saved in float32 (merging in float32 rounds W + s·B A)


def test_training_changes_only_factors_and_classifier(assets, runs):
    """PEFT's SEQ_CLS set: the factors and the classifier; BERT's pooler stays as the checkpoint has it."""
    base_dir, (adapter, _) = assets[0], runs
    base = load_pretrained(base_dir, dtype="float64", verbose=False)
    ours = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": adapter}, verbose=False)
    moved = {n for n in base.params if not np.array_equal(base.params[n], ours.params[n])}
    assert moved == {"classifier.weight", "classifier.bias"}


def test_pooler_trains_when_named(assets, tmp_path):
    """--lora-modules-to-save pooler: BERT's pooler trains too, the adapter says so (PEFT's modules_to_save), and
    reading the adapter back trains the same set."""
    base_dir = assets[0]
    assert _train(assets, tmp_path / "run", "--lora-modules-to-save", "pooler") == 0
    adapter = tmp_path / "run" / "model"
    assert json.loads((adapter / "adapter_config.json").read_text())["modules_to_save"] == ["classifier", "pooler"]
    base = load_pretrained(base_dir, dtype="float64", verbose=False)
    ours = load_pretrained(base_dir, dtype="float64", trainable="lora", lora={"adapter": adapter}, verbose=False)
    moved = {n for n in base.params if not np.array_equal(base.params[n], ours.params[n])}
    assert moved == {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias"} <= set(ours.trainable)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trainable_parameters"] == sum(int(ours.params[n].size) for n in ours.trainable)


def test_resuming_a_lora_run_saved_before_the_flag_keeps_its_pooler(assets, tmp_path, monkeypatch):
    """A --trainable lora run whose config.json predates --lora-modules-to-save trained BERT's pooler: a resume
    keeps that set (the checkpoint holds the pooler's state) instead of silently freezing it."""
    from minidp.step import DPStep

    out = tmp_path / "run"
    original = DPStep.__call__

    def crashing(self, lr=None):
        if self.steps_done == 2:
            raise RuntimeError("crash")
        return original(self, lr)

    monkeypatch.setattr(DPStep, "__call__", crashing)
    with pytest.raises(RuntimeError, match="crash"):
        _train(assets, out, "--checkpoint-every", "1", "--lora-modules-to-save", "pooler")
    monkeypatch.setattr(DPStep, "__call__", original)
    config = json.loads((out / "config.json").read_text())
    assert config["model"].pop("lora_modules_to_save") == "pooler"
    (out / "config.json").write_text(json.dumps(config))  # as a run saved before the flag existed
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter["modules_to_save"] == ["classifier", "pooler"]


@pytest.mark.parametrize("extra, field", [
    (["--trainable", "all", "--merge-lora"], "--merge-lora"),
    (["--lora-adapter", "somewhere", "--lora-rank", "4"], "--lora-rank"),
    (["--lora-rank", "0"], "--lora-rank"),
    (["--lora-targets", "nothing"], "lora targets"),
    (["--lora-modules-to-save", "lm_head"], "lora modules_to_save ['lm_head']"),
    (["--trainable", "all", "--lora-modules-to-save", "pooler"], "--lora-modules-to-save"),
    (["--lora-adapter", "nowhere", "--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "query,value"],
     "nowhere"),
])
def test_bad_lora_flags_are_one_line(assets, tmp_path, capsys, extra, field):
    code = _train(assets, tmp_path / "bad", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and field in err[0], err


def test_lora_run_resumes_bit_for_bit(assets, runs, tmp_path, monkeypatch):
    """A LoRA run that crashes after a checkpoint and is resumed ends with the uninterrupted run's adapter."""
    from minidp.step import DPStep

    out = tmp_path / "run"
    original = DPStep.__call__

    def crashing(self, lr=None):
        if self.steps_done == 2:
            raise RuntimeError("crash")
        return original(self, lr)

    monkeypatch.setattr(DPStep, "__call__", crashing)
    with pytest.raises(RuntimeError, match="crash"):
        _train(assets, out, "--checkpoint-every", "1")
    monkeypatch.setattr(DPStep, "__call__", original)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    reference = runs[0] / "adapter_model.safetensors"
    assert (out / "model" / "adapter_model.safetensors").read_bytes() == reference.read_bytes()
