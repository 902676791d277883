"""The privacy accountant: Rényi DP of Poisson-subsampled Gaussian steps, ε(δ), and σ calibration.

    acc = RDPAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    eps, order = acc.get_epsilon_and_order(1e-5)          # ≈ (2.1014, 7.8)
    sigma = get_noise_multiplier(2.0, 1e-5, 0.01, 1000)   # smallest σ with ε(σ) ≤ 2.0
    sigma = get_noise_multiplier(2.0, 1e-5, 0.01, 1000, accountant="pld")   # the same with the PLD ε
    acc = make_accountant("pld")                           # RDPAccountant() or pld.PLDAccountant()

* RDP of one step at each order α: ``rdp.py`` (Mironov, Talwar & Zhang 2019, §3); T identical steps
  compose to T·RDP(α), and different segments add (RDP composition, Mironov 2017, Prop. 1).
* ε(δ) = min_α [RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1)]
  (Canonne, Kamath & Steinke 2020, Prop. 12; Balle et al. 2020, Thm. 21).
* The ledger holds (noise_multiplier, sample_rate, steps) segments; consecutive steps with the same
  (σ, q) merge, so a long run is one or a few segments. It is the whole state (``state_dict``).

* The tight alternative, the privacy loss distribution, is ``pld.py`` (``PLDAccountant``, same interface).

Host-side float64 math (NumPy/SciPy): the accountant never sees device arrays. Derivation notes:
docs/accountant.md.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Iterable, Sequence

import numpy as np

from minidp.errors import PrivacyError
from minidp.privacy.ledger import (
    LedgerAccountant,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
    check_steps,
    ledger_from_state,
)
from minidp.privacy.pld import PLDAccountant, pld_epsilon
from minidp.privacy.rdp import log_a_fractional, log_a_integer

# dp-accounting's default grid: 1.1 ... 10.9 by 0.1, 11 ... 63, 128, 256, 512, 1024 (156 orders).
# Built as 1 + x/10 so that 2.0, 3.0, ... are exact integers and take the exact binomial path.
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.0 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(11, 64)] + [128.0, 256.0, 512.0, 1024.0]
)
# Below this order the conversion bound is numerically unstable (division by α − 1) and never useful.
MIN_CONVERSION_ORDER = 1.01
# Calibration: the largest σ tried, and how close to the target ε the answer must come.
MAX_NOISE_MULTIPLIER = 1e4
RDP_ROUNDING_SLACK = 1e-9  # an RDP value below −this is not rounding but a broken computation
CALIBRATION_RTOL = 1e-3   # stop once (1 − rtol)·target ≤ ε(σ) ≤ target; the contract asks for 1 %
ACCOUNTANTS = ("rdp", "pld")  # Rényi DP (loose, fast) | privacy loss distribution (tight)


class OrderAtGridEdgeWarning(UserWarning):
    """The optimal Rényi order is the smallest or largest on the grid: a wider grid may give a smaller ε."""


# ---------------------------------------------------------------------------------------------
# Argument checks (σ, q, steps, δ: shared with the PLD accountant, ``ledger.py``)

def _check_orders(orders: Iterable[float] | None) -> tuple[float, ...]:
    if orders is None:
        return DEFAULT_ORDERS
    checked = tuple(float(a) for a in orders)
    if not checked or any(not (a > 1.0) or math.isinf(a) for a in checked):
        raise PrivacyError(f"orders must be a non-empty list of finite Rényi orders > 1, got {orders!r}")
    return checked


# ---------------------------------------------------------------------------------------------
# RDP curves

def _rdp_one_order(q: float, sigma: float, alpha: float) -> float:
    """RDP(α) of one Poisson-subsampled Gaussian step, with the edge cases of the mechanism."""
    if q == 0.0:
        return 0.0                                  # nothing sampled: output independent of the data
    if sigma == 0.0:
        return math.inf                             # no noise: no Rényi guarantee at any order
    if q == 1.0:
        return alpha / (2.0 * sigma**2)             # plain Gaussian mechanism, sensitivity 1
    if alpha.is_integer():
        log_a = log_a_integer(sample_rate=q, noise_multiplier=sigma, alpha=int(alpha))
    else:
        log_a = log_a_fractional(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    return log_a / (alpha - 1.0)


@functools.lru_cache(maxsize=256)
def _rdp_one_step(sigma: float, q: float, orders: tuple[float, ...]) -> np.ndarray:
    """Cached RDP curve of a single step, (len(orders),), read-only (shared between callers)."""
    curve = np.array([_rdp_one_order(q, sigma, alpha) for alpha in orders], dtype=np.float64)
    curve.setflags(write=False)
    return curve


def compute_rdp(*, noise_multiplier: float, sample_rate: float, steps: int,
                orders: Sequence[float] | None = None) -> np.ndarray:
    """RDP curve of ``steps`` Poisson-subsampled Gaussian steps: steps·RDP_1(α) at each order, (A,).

    RDP_1(α) = log A_α / (α − 1) (MTZ 2019 §3.2 integer α, §3.3 fractional α); q = 0 gives 0,
    q = 1 gives α/(2σ²), σ = 0 gives +inf. ``orders`` defaults to ``DEFAULT_ORDERS``.
    """
    sigma = check_noise_multiplier(noise_multiplier)
    q = check_sample_rate(sample_rate)
    steps = check_steps(steps)
    orders = _check_orders(orders)
    if steps == 0:
        return np.zeros(len(orders))
    return steps * _rdp_one_step(sigma, q, orders)


def epsilon_from_rdp(*, orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """(ε, optimal α) for an RDP curve at target δ (Canonne, Kamath & Steinke 2020, Prop. 12):

        ε(δ) = min_α [ RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1) ],   clipped at 0.

    Two refinements, as in dp-accounting: an order whose RDP r satisfies δ² > 1 − e^{−r} gives ε = 0
    (RDP(α) ≥ KL for α ≥ 1, and TV ≤ √(1 − e^{−KL}) (Bretagnolle–Huber) ≤ δ means (0, δ)-DP);
    orders ≤ 1.01 are skipped (the bound divides by α − 1 there and is never the minimum).
    Fails closed: a NaN, an infinity or a value below −1e-9 at some order makes that order unusable (as if
    its RDP were +∞), so a broken computation never yields a smaller ε.
    Returns (inf, first order) when every order has infinite RDP. Issues no warning (see
    ``RDPAccountant.get_epsilon_and_order``).
    """
    delta = check_delta(delta)
    orders_arr = np.asarray(orders, dtype=np.float64)                         # (A,)
    rdp_arr = np.asarray(rdp, dtype=np.float64)                               # (A,)
    if orders_arr.shape != rdp_arr.shape or orders_arr.ndim != 1 or orders_arr.size == 0:
        raise PrivacyError(f"orders and rdp must be 1-D and of equal length, got {orders_arr.shape} "
                           f"and {rdp_arr.shape}")
    eps = np.full(orders_arr.shape, math.inf)                                 # (A,)
    for k, (alpha, r) in enumerate(zip(orders_arr.tolist(), rdp_arr.tolist())):
        # Fail closed: a value that is not a finite number ≥ −rounding is no bound at all, so that order
        # counts as RDP = +∞ (it can never make ε smaller). A tiny negative value is rounding: true RDP ≥ 0.
        if not (math.isfinite(r) and r >= -RDP_ROUNDING_SLACK) or not math.isfinite(alpha):
            continue
        r = max(r, 0.0)
        if delta**2 + math.expm1(-r) > 0.0:
            eps[k] = 0.0
        elif alpha > MIN_CONVERSION_ORDER:
            eps[k] = r + math.log1p(-1.0 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1.0)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(orders_arr[best])


# ---------------------------------------------------------------------------------------------
# The ledger

class RDPAccountant(LedgerAccountant):
    """Keeps the ledger of DP steps taken and converts it to (ε, δ).

    Composition is additive in RDP: RDP_total(α) = Σ_segments steps·RDP_1(α; σ, q).
    """

    def __init__(self, orders: Sequence[float] | None = None):
        super().__init__()
        self.orders: tuple[float, ...] = _check_orders(orders)

    def get_rdp(self, orders: Sequence[float] | None = None) -> np.ndarray:
        """The composed RDP curve, (A,), at ``orders`` (default: this accountant's orders)."""
        orders = self.orders if orders is None else _check_orders(orders)
        total = np.zeros(len(orders))                                          # (A,)
        for seg in self._ledger:
            total = total + compute_rdp(noise_multiplier=seg.noise_multiplier,
                                        sample_rate=seg.sample_rate, steps=seg.steps, orders=orders)
        return total

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(ε, optimal order α) at target δ; warns (``OrderAtGridEdgeWarning``) when α is at either
        end of the order grid, where a wider grid might give a smaller ε."""
        eps, order = epsilon_from_rdp(orders=self.orders, rdp=self.get_rdp(), delta=delta)
        if 0.0 < eps < math.inf and order in (min(self.orders), max(self.orders)):
            warnings.warn(f"optimal Renyi order {order:g} is at the edge of the order grid "
                          f"[{min(self.orders):g}, {max(self.orders):g}]; epsilon may be loose",
                          OrderAtGridEdgeWarning, stacklevel=2)
        return eps, order

    def get_epsilon(self, delta: float) -> float:
        """ε at target δ for everything recorded so far."""
        return self.get_epsilon_and_order(delta)[0]

    def state_dict(self) -> dict:
        """The ledger and order grid as plain JSON-serialisable types."""
        return {"orders": list(self.orders), "ledger": [seg.to_dict() for seg in self._ledger]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "RDPAccountant":
        """Rebuild an accountant from ``state_dict()`` output (e.g. read back from JSON)."""
        if not isinstance(state, dict) or not isinstance(state.get("ledger"), list):
            raise PrivacyError("accountant state must be a dict with a 'ledger' list")
        acc = cls(orders=state.get("orders"))
        acc._ledger = ledger_from_state(state["ledger"])
        return acc


# ---------------------------------------------------------------------------------------------
# Calibration

def make_accountant(name: str = "rdp"):
    """A fresh accountant by name: "rdp" -> RDPAccountant(), "pld" -> PLDAccountant() (the same interface)."""
    if name == "rdp":
        return RDPAccountant()
    if name == "pld":
        return PLDAccountant()
    raise PrivacyError(f"accountant must be one of {ACCOUNTANTS}, got {name!r}")


def get_noise_multiplier(target_epsilon: float, delta: float, sample_rate: float, steps: int, *,
                         orders: Sequence[float] | None = None, accountant: str = "rdp") -> float:
    """The smallest σ found with ε(σ) ≤ target_epsilon for ``steps`` steps at sample rate q.

    ``accountant``: "rdp" (ε from the RDP curve at ``orders``) or "pld" (the privacy loss distribution,
    ``pld.py``; ``orders`` must then be None). ε(σ) is continuous and non-increasing in σ, so: bracket the
    crossing by doubling/halving from σ = 1, then bisect on log σ until (1 − 1e-3)·target ≤ ε(σ) ≤ target
    (or the bracket is tight to 1e-12). The returned σ never overshoots the target. Raises PrivacyError
    when no σ ≤ 1e4 reaches it. q = 0 or steps = 0 need no noise and return 0.0.
    """
    target = float(target_epsilon)
    if not 0.0 < target < math.inf:
        raise PrivacyError(f"target epsilon must be a finite number > 0, got {target_epsilon!r}")
    if accountant not in ACCOUNTANTS:
        raise PrivacyError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    if accountant == "pld" and orders is not None:
        raise PrivacyError("orders are Renyi orders: they apply to accountant='rdp' only")
    delta = check_delta(delta)
    q = check_sample_rate(sample_rate)
    steps = check_steps(steps)
    orders = _check_orders(orders)
    if q == 0.0 or steps == 0:
        return 0.0

    def eps_at(sigma: float) -> float:
        if accountant == "pld":
            return pld_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
        rdp = compute_rdp(noise_multiplier=sigma, sample_rate=q, steps=steps, orders=orders)
        return epsilon_from_rdp(orders=orders, rdp=rdp, delta=delta)[0]

    if eps_at(MAX_NOISE_MULTIPLIER) > target:
        raise PrivacyError(f"target epsilon {target:g} is not reachable with noise_multiplier <= "
                           f"{MAX_NOISE_MULTIPLIER:g} (sample_rate={q:g}, steps={steps}, delta={delta:g})")
    # Bracket: eps(lo) > target >= eps(hi).
    hi = 1.0
    if eps_at(hi) > target:
        lo = hi
        while eps_at(hi) > target:
            lo, hi = hi, min(2.0 * hi, MAX_NOISE_MULTIPLIER)
    else:
        lo = hi / 2.0
        while eps_at(lo) <= target and lo > 1e-12:   # ε → ∞ as σ → 0, so this ends
            lo, hi = lo / 2.0, lo
    eps_hi = eps_at(hi)
    while eps_hi < (1.0 - CALIBRATION_RTOL) * target and hi - lo > 1e-12 * hi:
        mid = math.sqrt(lo * hi)
        eps_mid = eps_at(mid)
        if eps_mid > target:
            lo = mid
        else:
            hi, eps_hi = mid, eps_mid
    return hi
