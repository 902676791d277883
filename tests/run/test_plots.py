"""minidp.run.plots: the Marchenko–Pastur singular-value density and the spectrum figure."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minidp.run.plots import marchenko_pastur_singular_density, plot_spectrum
from tests.helpers import require_module


@pytest.mark.parametrize("m,n", [(50, 200), (120, 120), (300, 60)])
def test_density_integrates_to_one_inside_the_bulk(m, n):
    s = 0.7
    edge = s * (math.sqrt(m) + math.sqrt(n))
    x = np.linspace(0, 1.2 * edge, 200001)
    p = marchenko_pastur_singular_density(x, m=m, n=n, noise_std=s)
    assert np.trapezoid(p, x) == pytest.approx(1.0, abs=2e-3)
    assert np.all(p[x > edge] == 0) and np.all(p[x < s * abs(math.sqrt(m) - math.sqrt(n))] == 0)


def test_density_matches_sampled_singular_values():
    rng = np.random.default_rng(0)
    m, n, s = 200, 400, 0.3
    lam = np.linalg.svd(rng.standard_normal((m, n)) * s, compute_uv=False)
    x = np.linspace(0, lam.max() * 1.05, 4001)
    cdf = np.cumsum(marchenko_pastur_singular_density(x, m=m, n=n, noise_std=s)) * (x[1] - x[0])
    for q in (0.25, 0.5, 0.75):  # quantiles of the sample vs the density's
        assert np.quantile(lam, q) == pytest.approx(x[np.searchsorted(cdf, q)], rel=0.03)


def test_spectrum_figure(tmp_path):
    require_module("matplotlib")
    rng = np.random.default_rng(1)
    m, n, s = 80, 160, 0.5
    u, v = rng.standard_normal(m), rng.standard_normal(n)
    G = rng.standard_normal((m, n)) * s + 4 * s * (m * n) ** 0.25 * np.outer(u, v) / np.linalg.norm(u) / np.linalg.norm(v)
    path = plot_spectrum(np.linalg.svd(G, compute_uv=False), m=m, n=n, noise_std=s, kappa=1.02,
                         path=tmp_path / "fig" / "spectrum.png", title="planted spike")
    assert path.exists() and path.stat().st_size > 5000
    again = plot_spectrum(G.astype(np.float32), noise_std=s, kappa=1.02, path=tmp_path / "from_matrix.png")
    assert again.stat().st_size > 5000
