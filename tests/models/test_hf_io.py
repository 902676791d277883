"""Checkpoint I/O and input validation: clear DataError / ConfigError messages naming file, field, tensor."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from minidp.backend import to_host
from minidp.errors import ConfigError, DataError
from minidp.privacy.clipping import clipped_grad_sum
from models import load_pretrained, save_pretrained
from models.config import EncoderConfig, init_params, param_shapes
from models.hf import MEAN_POOLING_MODEL_TYPES, REMOTE_CODE_TEMPLATE, PretrainedClassifier, read_config
from models.roberta import SequenceClassifier

CONFIG = dict(model_type="bert", vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=12, max_position_embeddings=10, type_vocab_size=2, layer_norm_eps=1e-12,
              pad_token_id=0, hidden_act="gelu")


def _write_checkpoint(path, config=CONFIG, *, prefix=True, head=True, mutate=None):
    """A tiny BertModel-like checkpoint: optionally without the ``bert.`` prefix or the classifier."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = EncoderConfig.from_hf_dict(config)
    params = init_params(cfg, np.random.default_rng(0))
    tensors = {}
    for name, value in params.items():
        if not head and name.startswith("classifier."):
            continue
        key = name if prefix else name.removeprefix("bert.")
        tensors[key] = value.astype(np.float32)
    tensors[("bert." if prefix else "") + "embeddings.position_ids"] = np.arange(10)[None].astype(np.int64)
    tensors["cls.predictions.bias"] = np.zeros(30, dtype=np.float32)
    if mutate:
        mutate(tensors)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_prefixless_checkpoint_without_head_initialises_and_reports(tmp_path, capsys):
    path = _write_checkpoint(tmp_path / "ck", prefix=False, head=False)
    model = load_pretrained(path, num_labels=3, seed=5)
    assert model.init_report == ["classifier.weight", "classifier.bias"]
    assert "classifier.weight" in capsys.readouterr().out
    assert model.params["classifier.weight"].shape == (3, 8)
    assert np.all(to_host(model.params["classifier.bias"]) == 0)
    std = float(model.params["classifier.weight"].std())
    assert 0.005 < std < 0.05
    again = load_pretrained(path, num_labels=3, seed=5)
    assert np.array_equal(to_host(again.params["classifier.weight"]), to_host(model.params["classifier.weight"]))
    assert model.dtype == np.float32 and not model.training
    # the stored (prefixed) tensors were read, ignoring buffers and the MLM head
    ref = load_file(str(path / "model.safetensors"))
    assert np.array_equal(to_host(model.params["bert.encoder.layer.0.output.dense.weight"]),
                          ref["encoder.layer.0.output.dense.weight"])


def test_num_labels_default_and_from_id2label(tmp_path):
    assert load_pretrained(_write_checkpoint(tmp_path / "a", head=False)).num_labels == 2
    config = {**CONFIG, "id2label": {"0": "neg", "1": "neu", "2": "pos"}}
    path = _write_checkpoint(tmp_path / "b", config=config, head=False)
    model = load_pretrained(path)
    assert model.num_labels == 3
    save_pretrained(model, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert saved["architectures"] == ["BertForSequenceClassification"]
    assert set(load_file(str(tmp_path / "out" / "model.safetensors"))) == set(param_shapes(model.config))


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="not a checkpoint directory"):
        load_pretrained(tmp_path / "nowhere")
    path = _write_checkpoint(tmp_path / "ck")
    (path / "model.safetensors").unlink()
    with pytest.raises(DataError, match="model.safetensors: missing"):
        load_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(DataError, match="config.json: missing"):
        load_pretrained(path)


def test_unreadable_files(tmp_path):
    path = _write_checkpoint(tmp_path / "ck")
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="unreadable safetensors"):
        load_pretrained(path)
    (path / "config.json").write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        load_pretrained(path)


def test_wrong_shape_and_dtype_name_the_tensor(tmp_path):
    def bad_shape(t):
        t["bert.encoder.layer.0.intermediate.dense.weight"] = np.zeros((12, 9), dtype=np.float32)

    with pytest.raises(DataError, match=r"intermediate\.dense\.weight.*\(12, 9\).*expected \(12, 8\)"):
        load_pretrained(_write_checkpoint(tmp_path / "a", mutate=bad_shape))

    def bad_dtype(t):
        t["bert.embeddings.LayerNorm.weight"] = np.ones(8, dtype=np.int32)

    with pytest.raises(DataError, match=r"embeddings\.LayerNorm\.weight.*int32"):
        load_pretrained(_write_checkpoint(tmp_path / "b", mutate=bad_dtype))

    def drop_body(t):
        del t["bert.encoder.layer.0.output.LayerNorm.bias"]

    with pytest.raises(DataError, match=r"missing tensor.*output\.LayerNorm\.bias"):
        load_pretrained(_write_checkpoint(tmp_path / "c", mutate=drop_body))
    with pytest.raises(DataError, match=r"classifier\.(weight|bias).*num_labels"):
        load_pretrained(_write_checkpoint(tmp_path / "d"), num_labels=5)


@pytest.mark.parametrize("field,value", [("hidden_act", "relu"), ("position_embedding_type", "relative_key"),
                                         ("model_type", "gpt2"), ("hidden_size", 7)])
def test_unsupported_config_names_the_field(tmp_path, field, value):
    path = _write_checkpoint(tmp_path / "ck")
    (path / "config.json").write_text(json.dumps({**CONFIG, field: value}))
    with pytest.raises(ConfigError, match=rf"config\.json.*{field}"):
        load_pretrained(path)


def test_missing_config_field(tmp_path):
    path = _write_checkpoint(tmp_path / "ck")
    (path / "config.json").write_text(json.dumps({k: v for k, v in CONFIG.items() if k != "vocab_size"}))
    with pytest.raises(ConfigError, match="vocab_size"):
        load_pretrained(path)


def test_input_validation():
    cfg = EncoderConfig.from_hf_dict(CONFIG)
    model = SequenceClassifier(cfg, init_params(cfg, np.random.default_rng(0)))
    ok = np.ones((2, 4), dtype=np.int64)
    with pytest.raises(DataError, match=r"token id 30 .*max id 30, vocab_size=30"):
        model.forward([[1, 2, 30, 4], [1, 2, 3, 4]], ok)
    with pytest.raises(DataError, match=r"T=11 exceeds the position table limit 10"):
        model.forward(np.ones((2, 11), dtype=np.int64), np.ones((2, 11)))
    with pytest.raises(DataError, match="attention_mask: shape"):
        model.forward(ok, np.ones((2, 3)))
    with pytest.raises(DataError, match="token_type_ids"):
        model.forward(ok, ok, token_type_ids=ok * 2)
    with pytest.raises(DataError, match="labels"):
        model.loss_and_grads(ok, ok, [0, 2])
    with pytest.raises(ConfigError, match="trainable"):
        model.set_trainable(["bert.nope.weight"])
    with pytest.raises(ConfigError, match="trainable"):
        model.set_trainable("everything")
    with pytest.raises(ConfigError, match="empty"):
        model.set_trainable([])
    with pytest.raises(ConfigError, match="clipping method"):
        clipped_grad_sum(model, ok, ok, [0, 1], 1.0, clip_method="median")
    # lists and float masks are accepted; results equal the int64 arrays'
    assert np.array_equal(to_host(model.forward(ok.tolist(), ok.astype(np.float32))), to_host(model.forward(ok, ok)))


def test_roberta_position_limit_accounts_for_padding_offset():
    cfg = EncoderConfig(model_type="roberta", vocab_size=20, hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=8, max_position_embeddings=12,
                        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1)
    model = SequenceClassifier(cfg, init_params(cfg, np.random.default_rng(0)))
    assert cfg.max_tokens == 10
    model.forward(np.full((1, 10), 5), np.ones((1, 10)))
    with pytest.raises(DataError, match="limit 10"):
        model.forward(np.full((1, 11), 5), np.ones((1, 11)))
    ids = np.array([[0, 5, 6, 1, 1]])
    assert model.position_ids(ids).tolist() == [[2, 3, 4, 1, 1]]


def test_save_copies_tokenizer_files(tmp_path):
    path = _write_checkpoint(tmp_path / "ck", head=False)
    (path / "vocab.txt").write_text("[PAD]\n")
    model = load_pretrained(path, dtype="float64")
    out = save_pretrained(model, tmp_path / "out")
    assert (out / "vocab.txt").read_text() == "[PAD]\n"
    shutil.rmtree(path)
    again = load_pretrained(out, dtype="float64")
    assert again.init_report == []
    assert all(np.array_equal(to_host(again.params[n]), to_host(model.params[n])) for n in model.params)


def test_the_model_load_pretrained_returns_saves_itself(tmp_path):
    """model.save_pretrained(out) (the method a transformers / PEFT user types) is the one writer,
    models.hf.save_pretrained(model, out): the same files, byte for byte; merge_lora() keeps the method."""
    path = _write_checkpoint(tmp_path / "ck", head=False)
    model = load_pretrained(path, dtype="float64", verbose=False)
    assert isinstance(model, PretrainedClassifier) and isinstance(model, SequenceClassifier)
    assert model.save_pretrained(tmp_path / "method") == tmp_path / "method"
    save_pretrained(model, tmp_path / "function")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "method" / name).read_bytes() == (tmp_path / "function" / name).read_bytes(), name
    lora = load_pretrained(path, dtype="float64", trainable="lora", lora={"r": 2, "alpha": 4}, verbose=False)
    assert (lora.save_pretrained(tmp_path / "adapter") / "adapter_config.json").is_file()
    merged = lora.merge_lora()
    assert isinstance(merged, PretrainedClassifier)
    assert (merged.save_pretrained(tmp_path / "merged") / "model.safetensors").is_file()


def test_a_mean_pooling_export_names_its_pooling_and_reads_back(tmp_path):
    """pooling "mean": config.json's model_type is one transformers has no class for, auto_map points to the
    modeling_minidp.py written beside it; minidp reads it back as its family, and a "cls" re-save of it is a
    plain checkpoint again (no auto_map, model_type "bert")."""
    path = _write_checkpoint(tmp_path / "ck", head=False)
    model = load_pretrained(path, dtype="float64", pooling="mean", verbose=False)
    out = model.save_pretrained(tmp_path / "mean")
    raw = json.loads((out / "config.json").read_text())
    assert raw["model_type"] == MEAN_POOLING_MODEL_TYPES["bert"] == "minidp_mean_pooling_bert"
    assert raw["architectures"] == ["MeanPoolingBertForSequenceClassification"]
    assert raw["auto_map"] == {"AutoConfig": "modeling_minidp.MeanPoolingBertConfig",
                               "AutoModelForSequenceClassification":
                                   "modeling_minidp.MeanPoolingBertForSequenceClassification"}
    assert (out / "modeling_minidp.py").read_text() == REMOTE_CODE_TEMPLATE.read_text()
    assert read_config(out)["model_type"] == "bert" and "auto_map" not in read_config(out)
    again = load_pretrained(out, dtype="float64", verbose=False)
    assert again.pooling == "mean" and again.config.model_type == "bert"
    assert all(np.array_equal(to_host(again.params[n]), to_host(model.params[n])) for n in model.params)
    as_cls = load_pretrained(out, dtype="float64", pooling="cls", verbose=False).save_pretrained(tmp_path / "cls")
    raw = json.loads((as_cls / "config.json").read_text())
    assert raw["model_type"] == "bert" and "auto_map" not in raw and raw["minidp_pooling"] == "cls"
    assert raw["architectures"] == ["BertForSequenceClassification"]
    assert not (as_cls / "modeling_minidp.py").exists()
