"""--validation-fraction: hyperparameters are chosen on a share of the training split, never on the task's
evaluation split (the studies' searches)."""
from __future__ import annotations

import dataclasses

import pytest

from minidp.run.config import DataConfig, ModelConfig, TrainConfig
from minidp.errors import ConfigError
from minidp.run.train import load_splits
from tests.fixtures import write_tiny_tsv


def config(tmp_path, **data) -> TrainConfig:
    folder = tmp_path / "SST-2"
    folder.mkdir(exist_ok=True)
    write_tiny_tsv(folder / "train.tsv", 80, seed=1)
    write_tiny_tsv(folder / "dev.tsv", 20, seed=2)
    return TrainConfig(model=ModelConfig(path="unused"), data=DataConfig(task="sst2", data_dir=str(tmp_path), **data))


def test_validation_is_carved_from_train_and_dev_is_not_used(tmp_path):
    train, dev = load_splits(config(tmp_path))
    fit, validation = load_splits(config(tmp_path, validation_fraction=0.25))
    assert len(fit) + len(validation) == len(train) and len(validation) == 20
    assert sorted(fit.texts + validation.texts) == sorted(train.texts)  # a partition of the training split
    assert sorted(validation.labels) != [] and set(validation.labels) == {0, 1}  # stratified: both classes
    assert validation.texts != dev.texts
    again = load_splits(config(tmp_path, validation_fraction=0.25))[1]  # fixed seed: the same split every run
    assert again.texts == validation.texts


def test_validation_fraction_outside_0_1_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="validation_fraction"):
        dataclasses.replace(config(tmp_path), data=DataConfig(task="sst2", data_dir=str(tmp_path),
                                                              validation_fraction=1.5)).validate()
