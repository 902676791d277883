"""Fixtures: one tiny random transformers model per family, saved once, loaded by minidp in float64."""
from __future__ import annotations

import pytest

from tests.oracle.hf_models import build_hf_classifier


@pytest.fixture(scope="session", params=["roberta", "bert"])
def family(request):
    return request.param


@pytest.fixture(scope="session")
def hf_pair(family, tmp_path_factory):
    """(transformers model, its save_pretrained directory) for ``family``, float64, eval mode."""
    hf_model = build_hf_classifier(family, seed=0)
    path = tmp_path_factory.mktemp(f"hf_{family}")
    hf_model.save_pretrained(path)
    return hf_model, path
