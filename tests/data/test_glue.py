"""GLUE TSV loading: counts on the real files, every documented layout, and errors that name file and line."""
import numpy as np
import pytest

from minidp.data.glue import GLUE_TASKS, load_glue, load_glue_file, read_tsv
from minidp.errors import ConfigError, DataError
from tests.helpers import shared_path


@pytest.fixture(scope="module")
def glue_dir():
    return shared_path("data", "glue")


def test_sst2_real_counts(glue_dir):
    train = load_glue("sst2", glue_dir, "train")
    dev = load_glue("sst2", glue_dir, "dev")
    assert (len(train), train.class_counts()) == (67349, {"negative": 29780, "positive": 37569})
    assert (len(dev), dev.class_counts()) == (872, {"negative": 428, "positive": 444})
    assert dev.text_pairs is None and dev.labels.dtype == np.int64
    assert dev.texts[0] == "it 's a charming and often affecting journey . "  # kept byte-for-byte
    assert dev.labels[0] == 1 and dev.source.endswith("dev.tsv")


def test_qnli_real_counts(glue_dir):
    dev = load_glue("qnli", glue_dir / "QNLI", "dev")  # the task folder itself works too
    assert (len(dev), dev.class_counts()) == (5463, {"entailment": 2702, "not_entailment": 2761})
    assert dev.texts[0] == "What came into force after the new constitution was herald?"
    assert dev.text_pairs[0].startswith("As of that day, the new constitution heralding")
    assert dev.labels[0] == 0


def test_sst2_test_is_unlabeled(glue_dir):
    with pytest.raises(DataError, match="unlabeled"):
        load_glue("sst2", glue_dir, "test")


def test_qnli_train_missing_names_file(glue_dir):
    with pytest.raises(DataError, match=r"QNLI/train\.tsv"):
        load_glue("qnli", glue_dir, "train")


def write(path, lines, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return path


def test_qqp_layout(tmp_path):
    write(tmp_path / "QQP" / "train.tsv", [
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        '0\t1\t2\tHow do I "learn\tWhat is it?\t0',  # an unbalanced quote is just a character
        "1\t3\t4\tWhy?\tWhy not?\t1",
    ], newline="\r\n")
    ds = load_glue("qqp", tmp_path, "train")
    assert ds.texts == ['How do I "learn', "Why?"]
    assert ds.text_pairs == ["What is it?", "Why not?"]
    np.testing.assert_array_equal(ds.labels, [0, 1])
    assert ds.label_names == ["not_duplicate", "duplicate"]


def test_mnli_layout_by_header_name(tmp_path):
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
    row = "0\t1\t1e\tfiction\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tPremise {k}.\tHypothesis {k}.\tneutral\t-\t-\t-\t-\t{g}"
    golds = ["entailment", "neutral", "contradiction", "neutral"]
    write(tmp_path / "MNLI" / "dev_matched.tsv", [header] + [row.format(k=k, g=g) for k, g in enumerate(golds)])
    ds = load_glue("mnli", tmp_path, "dev")
    np.testing.assert_array_equal(ds.labels, [0, 1, 2, 1])  # the last column, not label1
    assert ds.texts[2] == "Premise 2." and ds.text_pairs[2] == "Hypothesis 2."
    assert ds.label_names == list(GLUE_TASKS["mnli"].label_names)


def test_bad_label_names_file_line_and_value(tmp_path):
    path = write(tmp_path / "SST-2" / "train.tsv", ["sentence\tlabel", "good\t1", "bad\t0", "huh\t2"])
    with pytest.raises(DataError, match=r"train\.tsv, line 4: label '2'"):
        load_glue("sst2", tmp_path, "train")
    path.write_text("sentence\tlabel\ngood\t1\nno tab here\n")
    with pytest.raises(DataError, match=r"train\.tsv, line 3: 1 tab-separated fields"):
        load_glue("sst2", tmp_path, "train")
    path.write_text("sentence\tlabel\ngood\t1\n\nbad\t0\n")  # a blank line is a malformed row, not skipped
    with pytest.raises(DataError, match="line 3"):
        load_glue("sst2", tmp_path, "train")


def test_missing_column_names_column_file_and_header(tmp_path):
    write(tmp_path / "SST-2" / "dev.tsv", ["text\tlabel", "good\t1"])
    with pytest.raises(DataError, match=r"dev\.tsv: no column 'sentence'; the header has \['text', 'label'\]"):
        load_glue("sst2", tmp_path, "dev")


def test_invalid_utf8_is_an_error_with_line(tmp_path):
    path = tmp_path / "SST-2" / "dev.tsv"
    path.parent.mkdir()
    path.write_bytes(b"sentence\tlabel\nfine\t1\nbad \xd1 byte\t0\n")
    with pytest.raises(DataError, match=r"dev\.tsv, line 3: not valid UTF-8"):
        load_glue("sst2", tmp_path, "dev")


def test_unknown_task_and_split(tmp_path):
    with pytest.raises(ConfigError, match="cola"):
        load_glue("cola", tmp_path)
    with pytest.raises(ConfigError, match="split='val'"):
        load_glue("sst2", tmp_path, "val")


def test_read_tsv_without_final_newline(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("a\tb\n1\t2\n3\t4")
    header, rows = read_tsv(path)
    assert header == ["a", "b"] and rows == [(2, ["1", "2"]), (3, ["3", "4"])]


def test_load_glue_file_by_path(glue_dir, tmp_path):
    dev = load_glue_file("sst2", glue_dir / "SST-2" / "dev.tsv")
    assert (len(dev), dev.class_counts()) == (872, {"negative": 428, "positive": 444})
    with pytest.raises(DataError, match="unlabeled"):
        load_glue_file("sst2", glue_dir / "SST-2" / "test.tsv")
    mine = write(tmp_path / "my_pairs.tsv", ["index\tquestion\tsentence\tlabel", "7\tQ?\tS.\tnot_entailment"])
    ds = load_glue_file("qnli", mine)
    assert ds.texts == ["Q?"] and ds.text_pairs == ["S."] and list(ds.labels) == [1]
    with pytest.raises(DataError, match=r"nope\.tsv: no such file"):
        load_glue_file("qnli", tmp_path / "nope.tsv")
