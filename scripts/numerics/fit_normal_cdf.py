"""Derive the rational approximation of the normal CDF that minidp's float32 GELU uses.

    python -m scripts.numerics.fit_normal_cdf

Φ(x) − ½ is odd, so for |x| ≤ X it is written x · R(u), u = (x / X)², with R = P/Q a rational function of
degrees (NUM, DEN) and Q(0) = 1; beyond ±X, Φ is taken as 1 and 0. X = 5.625 (45/8, exact in float32):
1 − Φ(X) = 9.3e-9, under half of float32's spacing just below 1 (6.0e-8), so the cut costs nothing once the
result is rounded to float32.

The coefficients minimise max_x |x (P(u)/Q(u) − f(x))|, f(x) = (Φ(x) − ½)/x, the absolute error in Φ, over
Chebyshev points of [0, X]. The minimax problem is solved approximately by two textbook iterations:
linearised least squares (P − f Q = 0 divided by the previous Q, the Sanathanan–Koerner/Loeb iteration), and
Lawson's reweighting (points with a large error get more weight each round), which drives the error toward
equal ripple. The reference Φ is SciPy's float64 ``ndtr``. The script prints the coefficients in the form
minidp/numerics.py stores them and the largest error it finds on a dense float64 grid; tests/test_numerics.py
checks the stored ones on float32 inputs.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.special import ndtr

X = 5.625
NUM, DEN = 5, 5


def target(x):
    """f(x) = (Φ(x) − ½) / x, with its limit φ(0) = 1/√(2π) at x = 0."""
    safe = np.where(x == 0, 1.0, x)
    return np.where(x == 0, 1.0 / np.sqrt(2.0 * np.pi), (ndtr(x) - 0.5) / safe)


def fit(num: int = NUM, den: int = DEN, clamp: float = X, points: int = 20000, rounds: int = 300):
    """(p, q, max error on the fit points): P(u) = Σ p_k u^k, Q(u) = Σ q_k u^k, q_0 = 1."""
    k = np.arange(points)
    x = np.append(clamp * (1.0 - np.cos(np.pi * (k + 0.5) / points)) / 2.0, clamp)  # Chebyshev points of [0, X]
    f, u = target(x), (x / clamp) ** 2
    powers_p = u[:, None] ** np.arange(num + 1)  # (points, num+1)
    powers_q = u[:, None] ** np.arange(1, den + 1)  # (points, den): q_0 = 1 is fixed
    weight, q_prev = np.full(x.shape, 1.0 / x.size), np.ones_like(x)
    for _ in range(rounds):
        # x (P − f Q) / Q_prev ≈ x (P/Q − f): linear in the unknowns (p, q_1..q_den)
        a = np.concatenate([powers_p, -f[:, None] * powers_q], axis=1) * (x / q_prev)[:, None]
        b = x * f / q_prev
        root_w = np.sqrt(weight)
        coef, *_ = np.linalg.lstsq(a * root_w[:, None], b * root_w, rcond=None)
        p, q = coef[:num + 1], np.concatenate([[1.0], coef[num + 1:]])
        q_prev = powers_q @ q[1:] + 1.0
        error = x * ((powers_p @ p) / q_prev - f)
        weight = weight * np.sqrt(np.abs(error))  # Lawson's step, damped by the square root
        weight /= weight.sum()
    return p, q, float(np.abs(error).max())


def cdf(x, p, q, clamp: float = X):
    """Φ(x) ≈ ½ + x P(u)/Q(u), u = (min(|x|, X)/X)², in float64."""
    x = np.clip(x, -clamp, clamp)
    u = (x / clamp) ** 2
    return 0.5 + x * np.polyval(p[::-1], u) / np.polyval(q[::-1], u)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=4_000_001, help="points of the dense check grid on [-8, 8]")
    args = parser.parse_args(argv)
    p, q, fit_error = fit()
    grid = np.linspace(-8.0, 8.0, args.grid)
    dense_error = float(np.abs(cdf(grid, p, q) - ndtr(grid)).max())
    positive = bool((np.polyval(q[::-1], np.linspace(0.0, 1.0, 100001)) > 0).all())
    print(f"degrees ({NUM}, {DEN}), X = {X}: max |error| {fit_error:.3g} on the fit points, "
          f"{dense_error:.3g} on {args.grid:,} points of [-8, 8]; Q > 0 on [0, 1]: {positive}")
    print("CDF_P = (" + ", ".join(repr(float(c)) for c in p) + ")")
    print("CDF_Q = (" + ", ".join(repr(float(c)) for c in q) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
