"""The alignment diagnostic (non-private): cosines to the clipped gradient, per matrix and whole."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidp.denoise import alignment, denoise_gradients
from tests.denoise.planted import cos, planted


def _grads(seed=0):
    rng = np.random.default_rng(seed)
    clipped, noisy = {}, {}
    for i, (m, n) in enumerate([(40, 30), (30, 30), (50, 20)]):
        X, G = planted(m, n, 0.2, [3.0, 1.8], rng)
        name = f"bert.encoder.layer.{i}.attention.self.query.weight"
        clipped[name], noisy[name] = X, G
    clipped["bert.encoder.layer.0.attention.self.query.bias"] = rng.standard_normal(30)
    noisy["bert.encoder.layer.0.attention.self.query.bias"] = (clipped["bert.encoder.layer.0.attention.self.query.bias"]
                                                               + 0.2 * rng.standard_normal(30))
    return clipped, noisy


def test_alignment_values_and_non_private_flag():
    clipped, noisy = _grads()
    denoised, _ = denoise_gradients(noisy, 0.2)
    report = alignment(noisy, denoised, clipped)
    assert report["non_private"] is True and "NON-PRIVATE" in report["note"]
    json.dumps(report)
    assert set(report["per_matrix"]) == {k for k, v in clipped.items() if v.ndim == 2}
    for name, rec in report["per_matrix"].items():
        assert abs(rec["cos_noisy"] - cos(noisy[name], clipped[name])) <= 1e-12
        assert abs(rec["cos_denoised"] - cos(denoised[name], clipped[name])) <= 1e-12
        assert abs(rec["gain"] - (rec["cos_denoised"] - rec["cos_noisy"])) <= 1e-15
        assert rec["gain"] > 0  # strong planted signals: denoising helps
    flat = lambda d: np.concatenate([d[k].ravel() for k in clipped])  # noqa: E731
    whole = report["whole"]
    assert abs(whole["cos_noisy"] - cos(flat(noisy), flat(clipped))) <= 1e-12
    assert abs(whole["cos_denoised"] - cos(flat(denoised), flat(clipped))) <= 1e-12
    assert whole["gain"] > 0  # Theorem 1: block gains, preserved norms -> whole gain


def test_alignment_zero_vector_and_shape_mismatch():
    z = {"w": np.zeros((3, 2))}
    report = alignment(z, z, {"w": np.ones((3, 2))})
    assert report["per_matrix"]["w"]["cos_noisy"] is None and report["whole"]["gain"] is None
    with pytest.raises(ValueError, match="shapes differ"):
        alignment({"w": np.ones((3, 2))}, {"w": np.ones((2, 3))}, {"w": np.ones((3, 2))})
