"""Privacy loss distributions (PLD) of the Poisson-subsampled Gaussian: tight (ε, δ) accounting.

    acc = PLDAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    acc.get_epsilon(1e-5)          # ≈ 1.83, where the RDP accountant says 2.10 for the same run
    acc.get_delta(2.0)

For a pair of output distributions (P, Q) the privacy loss of an output x is L(x) = log P(x)/Q(x), and
its distribution under x ~ P (the PLD ω) gives the tightest δ at every ε:

    δ(ε) = E_{L~ω}[(1 − e^{ε−L})₊] + ω(+∞).

Independent steps compose by adding their losses: T steps have the PLD ω * ω * … * ω (convolution).

* One step (Koskela, Jälkö & Honkela 2020, "Computing tight differential privacy guarantees using FFT").
  Scaled by the clipping norm, with μ0 = N(0, σ²), μ1 = N(1, σ²) and the mixture μq = (1 − q)μ0 + qμ1:
      remove one example: (P, Q) = (μq, μ0),  L(x) =  log(1 − q + q·e^{(2x−1)/(2σ²)})   (increasing in x)
      add one example:    (P, Q) = (μ0, μq),  L(x) = −log(1 − q + q·e^{(2x−1)/(2σ²)})   (decreasing in x)
  Each adjacency is composed on its own; ε(δ) is the larger of the two (δ(ε) likewise).
* Discretisation on the grid h·ℤ, h = 1e-4 by default. The outputs x whose loss lies in (kh, (k+1)h] carry
  P-mass P_k and Q-mass Q_k (Gaussian CDFs at the inverse of L). They are replaced by two outputs with
  losses exactly kh and (k+1)h, masses w_lo + w_hi = P_k and w_lo·e^{−kh} + w_hi·e^{−(k+1)h} = Q_k.
  Merging those two outputs gives back the original ones, so the true pair is a post-processing of the
  discrete one: every δ(ε) computed from the grid, after any number of compositions, is an upper bound
  (pessimistic), and it is exact at ε on the grid ("connect the dots", Doroshenko et al. 2022). Plain
  rounding of each loss up to the grid is pessimistic too, but shifts every step's mean loss by ≈ h/2,
  which adds up over 10⁴ steps; the split is second order in h.
  The x tails of P-mass ≤ 1e-22 on either side are cut: the high-loss side goes to L = +∞ and the
  low-loss side is rounded up onto the grid — both pessimistic.
* Composition by FFT: ω^{*T} is the T-th power of ω's discrete Fourier transform, on a window of losses
  given by Chernoff bounds of the sum, P[ΣL ∉ window] ≤ 2·1e-15. Mass below the window folds onto larger
  losses (pessimistic); the bound on the mass above it is added to ω(+∞). A grid that would need more
  than 2²¹ points is coarsened (h → 2h) with the same split, so it stays an upper bound.

Host-side float64 NumPy/SciPy, like the RDP accountant. Derivation notes: docs/accountant.md.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import fftconvolve
from scipy.special import ndtr, ndtri

from minidp.errors import PrivacyError
from minidp.numerics import logsumexp
from minidp.privacy.ledger import (
    LedgerAccountant,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
    check_steps,
    ledger_from_state,
)

DEFAULT_INTERVAL = 1e-4      # h: losses live on h·ℤ (dp-accounting's default value_discretization_interval)
TRUNCATION_MASS = 1e-22      # P-mass of each x tail of one step that is cut off (≈ e^{−50})
TAIL_MASS = 1e-15            # mass allowed outside the window of a composition, per side
MAX_POINTS = 2**21           # a grid longer than this is coarsened (h -> 2h) before composing
DIRECTIONS = ("remove", "add")
# Chernoff parameters t tried for the window of a T-fold composition (only its width depends on them).
_CHERNOFF_T = np.geomspace(1e-3, 1e2, 16)


@dataclass(frozen=True, eq=False)          # compared and hashed by identity (it holds an array)
class DiscretePLD:
    """A privacy loss distribution on the grid h·ℤ: P[L = (offset + k)·h] = pmf[k], P[L = +∞] = infinity_mass.

    The finite masses may sum to a little less than 1 − infinity_mass (the Q side of a cut tail is
    dropped), never to more than 1 by more than float rounding.
    """

    interval: float          # h
    offset: int              # grid index of pmf[0]
    pmf: np.ndarray          # (n,) float64, read-only
    infinity_mass: float

    @property
    def losses(self) -> np.ndarray:
        """(n,) the loss of each entry of ``pmf``."""
        return (self.offset + np.arange(self.pmf.size)) * self.interval


def _make(interval: float, offset: int, pmf: np.ndarray, infinity_mass: float) -> DiscretePLD:
    pmf = np.maximum(np.asarray(pmf, dtype=np.float64), 0.0)     # FFT rounding can leave tiny negatives
    pmf.setflags(write=False)                                     # shared through caches
    return DiscretePLD(float(interval), int(offset), pmf, float(min(1.0, max(0.0, infinity_mass))))


def identity_pld(interval: float = DEFAULT_INTERVAL) -> DiscretePLD:
    """No release: the loss is 0 with probability 1."""
    return _make(interval, 0, np.ones(1), 0.0)


# ---------------------------------------------------------------------------------------------
# One step of the Poisson-subsampled Gaussian

def _log_mixture_ratio(x: np.ndarray, sigma: float, q: float) -> np.ndarray:
    """log μq(x)/μ0(x) = log(1 − q + q·e^z), z = (2x − 1)/(2σ²), without overflow or loss near 0."""
    z = (2.0 * x - 1.0) / (2.0 * sigma**2)
    with np.errstate(over="ignore", divide="ignore"):
        small = np.log1p(q * np.expm1(np.minimum(z, 30.0)))              # accurate when the ratio is near 1
        large = np.logaddexp(math.log1p(-q) if q < 1.0 else -math.inf, math.log(q) + z)
    return np.where(z < 30.0, small, large)


def _x_of_loss(loss: np.ndarray, sigma: float, q: float, direction: str) -> np.ndarray:
    """The output x whose privacy loss is ``loss`` (inverse of L); ∓∞ where no x has that loss."""
    r = loss if direction == "remove" else -loss                         # r = log(1 − q + q·e^z)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # e^z = (e^r − (1 − q))/q; for r > 0 written as e^r·(1 − (1 − q)e^{−r}) to avoid overflow
        log_ez = np.where(r > 0.0,
                          r + np.log1p(-(1.0 - q) * np.exp(-np.abs(r))),
                          np.log(np.maximum(np.expm1(np.minimum(r, 0.0)) + q, 0.0))) - math.log(q)
    return 0.5 + sigma**2 * log_ez


def _normal_masses(z: np.ndarray) -> np.ndarray:
    """N(0, 1) mass of each interval (z_k, z_{k+1}] of increasing edges z (K+1,) -> (K,), ±∞ allowed;
    accurate in both tails (right of 0 as differences of survival functions)."""
    cdf, sf = ndtr(z), ndtr(-z)                                            # (K+1,) each
    return np.where(z[:-1] > 0.0, sf[:-1] - sf[1:], cdf[1:] - cdf[:-1])


@functools.lru_cache(maxsize=64)
def subsampled_gaussian_pld(*, noise_multiplier: float, sample_rate: float, direction: str,
                            interval: float = DEFAULT_INTERVAL) -> DiscretePLD:
    """The discretised PLD of ONE Poisson-subsampled Gaussian step, for one adjacency (module docstring).

    q = 0 gives the identity; σ = 0 gives the exact two-point PLD (the sampled example is seen exactly).
    """
    sigma = check_noise_multiplier(noise_multiplier)
    q = check_sample_rate(sample_rate)
    if direction not in DIRECTIONS:
        raise PrivacyError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    h = float(interval)
    if q == 0.0:
        return identity_pld(h)
    if sigma == 0.0:
        if direction == "remove":   # x = 1 w.p. q (Q has no mass there: L = ∞); x = 0: L = log(1 − q)
            finite = math.log1p(-q) if q < 1.0 else 0.0
            return _make(h, math.ceil(finite / h), np.array([1.0 - q]), q)
        if q == 1.0:                # add, q = 1: Q never outputs 0
            return _make(h, 0, np.zeros(1), 1.0)
        return _make(h, math.ceil(-math.log1p(-q) / h), np.ones(1), 0.0)   # add: x = 0, L = −log(1 − q)

    # Outputs x outside [x_lo, x_hi] have P-mass ≤ TRUNCATION_MASS on each side, for both adjacencies.
    z_cut = float(ndtri(TRUNCATION_MASS))                                  # ≈ −9.7
    x_lo, x_hi = sigma * z_cut, 1.0 - sigma * z_cut
    ends = _log_mixture_ratio(np.array([x_lo, x_hi]), sigma, q)
    if direction == "add":
        ends = -ends[::-1]                    # the loss decreases in x: low-loss end is x_hi
    k_lo, k_hi = math.floor(ends[0] / h), math.ceil(ends[1] / h)
    k_hi = max(k_hi, k_lo + 1)
    edges = np.arange(k_lo, k_hi + 1) * h                                  # (K+1,) grid losses
    x = np.clip(_x_of_loss(edges, sigma, q, direction), x_lo, x_hi)        # (K+1,) x at each grid loss
    if direction == "add":
        x = x[::-1]                                                        # increasing x
    m0 = _normal_masses(x / sigma)                                         # (K,) μ0 mass between the x
    m1 = _normal_masses((x - 1.0) / sigma)                                 # (K,) μ1 mass
    if direction == "add":
        m0, m1 = m0[::-1], m1[::-1]                                        # back to increasing loss
    mix = (1.0 - q) * m0 + q * m1
    p_mass, q_mass = (mix, m0) if direction == "remove" else (m0, mix)

    # Split each interval's mass between its two grid ends, keeping both the P- and the Q-mass:
    # w_hi = (P − Q·e^{kh}) / (1 − e^{−h}), w_lo = P − w_hi.
    with np.errstate(over="ignore", invalid="ignore"):
        w_hi = (p_mass - q_mass * np.exp(edges[:-1])) / -math.expm1(-h)
    w_hi = np.where(np.isfinite(w_hi), np.clip(w_hi, 0.0, p_mass), p_mass)   # rounding: stay in [0, P]
    pmf = np.zeros(edges.size)
    pmf[:-1] += p_mass - w_hi
    pmf[1:] += w_hi

    # The cut tails: the low-loss one rounded up onto the grid, the high-loss one to L = +∞.
    if direction == "remove":
        low_tail = (1.0 - q) * ndtr(x_lo / sigma) + q * ndtr((x_lo - 1.0) / sigma)
        high_tail = (1.0 - q) * ndtr(-x_hi / sigma) + q * ndtr(-(x_hi - 1.0) / sigma)
    else:
        low_tail, high_tail = ndtr(-x_hi / sigma), ndtr(x_lo / sigma)
    pmf[math.ceil(ends[0] / h) - k_lo] += low_tail
    return _make(h, k_lo, pmf, high_tail)


# ---------------------------------------------------------------------------------------------
# Grid operations: coarsen, truncate, compose

def coarsen(pld: DiscretePLD) -> DiscretePLD:
    """The same PLD on the grid 2h. A mass p at an odd point l = (2j+1)h is split between (l − h) and
    (l + h) as p·e^{−h}/(1 + e^{−h}) and p/(1 + e^{−h}), which keeps its P- and Q-mass: still an upper bound."""
    pmf, offset = pld.pmf, pld.offset
    if offset % 2:                               # start on an even (coarse) point
        pmf, offset = np.concatenate([[0.0], pmf]), offset - 1
    if pmf.size % 2 == 0:                        # end on an even point
        pmf = np.concatenate([pmf, [0.0]])
    even, odd = pmf[0::2].copy(), pmf[1::2]      # (n+1)/2 and (n−1)/2 entries
    up = odd / (1.0 + math.exp(-pld.interval))
    even[:-1] += odd - up
    even[1:] += up
    return _make(2.0 * pld.interval, offset // 2, even, pld.infinity_mass)


def _coarsen_to(pld: DiscretePLD, interval: float) -> DiscretePLD:
    while pld.interval < interval * (1 - 1e-9):
        pld = coarsen(pld)
    return pld


def truncate(pld: DiscretePLD, tail_mass: float = TAIL_MASS) -> DiscretePLD:
    """Drop the outer entries holding ≤ ``tail_mass`` on each side: the low side is folded onto the first
    kept entry (losses rounded up), the high side is added to the mass at +∞. Pessimistic both ways."""
    pmf = pld.pmf
    if pmf.size <= 1:
        return pld
    first = int(np.searchsorted(np.cumsum(pmf), tail_mass, side="right"))          # entries [0, first)
    last = pmf.size - int(np.searchsorted(np.cumsum(pmf[::-1]), tail_mass, side="right"))  # [last, n)
    first = min(first, pmf.size - 1)
    last = max(last, first + 1)
    kept = pmf[first:last].copy()
    kept[0] += pmf[:first].sum()
    return _make(pld.interval, pld.offset + first, kept, pld.infinity_mass + pmf[last:].sum())


def compose(a: DiscretePLD, b: DiscretePLD, *, tail_mass: float = TAIL_MASS) -> DiscretePLD:
    """The PLD of running a's and b's mechanisms one after the other: the convolution (by FFT)."""
    h = max(a.interval, b.interval)
    a, b = _coarsen_to(a, h), _coarsen_to(b, h)
    pmf = fftconvolve(a.pmf, b.pmf)
    infinity = a.infinity_mass + b.infinity_mass - a.infinity_mass * b.infinity_mass
    out = truncate(_make(h, a.offset + b.offset, pmf, infinity), tail_mass)
    while out.pmf.size > MAX_POINTS:
        out = truncate(coarsen(out), tail_mass)
    return out


@functools.lru_cache(maxsize=64)
def _log_mgf(pld: DiscretePLD) -> tuple[np.ndarray, np.ndarray]:
    """K(±t) = log E[e^{±tL}; L finite] at every t of _CHERNOFF_T (cached: one-step PLDs are reused)."""
    support = np.flatnonzero(pld.pmf > 0)
    log_p, losses = np.log(pld.pmf[support]), pld.losses[support]           # (s,), (s,)
    k_pos = np.array([float(logsumexp(log_p + t * losses)) for t in _CHERNOFF_T])
    k_neg = np.array([float(logsumexp(log_p - t * losses)) for t in _CHERNOFF_T])
    return k_pos, k_neg


def _chernoff_window(pld: DiscretePLD, count: int, tail_mass: float) -> tuple[int, int]:
    """Grid indices [lo, hi] with P[sum of ``count`` losses < lo·h] and P[… > hi·h] each ≤ tail_mass.

    Chernoff: P[S ≥ u] ≤ exp(count·K(t) − t·u) for t > 0 (P[S ≤ u] likewise with −t), where
    K(t) = log E[e^{tL}; L finite]; the best of a fixed grid of t is taken (it only sets the FFT length).
    """
    k_pos, k_neg = _log_mgf(pld)
    log_tail = math.log(tail_mass)
    upper = float(np.min((count * k_pos - log_tail) / _CHERNOFF_T))
    lower = float(np.max(-(count * k_neg - log_tail) / _CHERNOFF_T))
    support = np.flatnonzero(pld.pmf > 0)
    first, last = pld.offset + support[0], pld.offset + support[-1]
    lo = max(math.floor(lower / pld.interval), count * first)
    hi = min(math.ceil(upper / pld.interval), count * last)
    return lo, max(hi, lo)


def _infinity_after(infinity_mass: float, count: int) -> float:
    """P[some of ``count`` independent losses is +∞] = 1 − (1 − ω(∞))^count."""
    return -math.expm1(count * math.log1p(-infinity_mass)) if infinity_mass < 1.0 else 1.0


def self_compose(pld: DiscretePLD, count: int, *, tail_mass: float = TAIL_MASS) -> DiscretePLD:
    """``count`` independent runs of ``pld``'s mechanism: ω^{*count} as the count-th power of its FFT,
    computed on the Chernoff window of the sum (see module docstring)."""
    count = check_steps(count)
    if count == 0:
        return identity_pld(pld.interval)
    if count == 1:
        return pld
    if not pld.pmf.any():                          # every loss is +∞ (or no mass at all)
        return _make(pld.interval, pld.offset * count, pld.pmf, _infinity_after(pld.infinity_mass, count))
    lo, hi = _chernoff_window(pld, count, tail_mass)
    while hi - lo + 1 > MAX_POINTS:
        pld = truncate(coarsen(pld), tail_mass)
        lo, hi = _chernoff_window(pld, count, tail_mass)
    infinity = _infinity_after(pld.infinity_mass, count)
    size = sp_fft.next_fast_len(hi - lo + 1, real=True)
    # Circular convolution of length `size`: fold the pmf modulo size first (it may be longer).
    folded = np.zeros(size)
    np.add.at(folded, np.arange(pld.pmf.size) % size, pld.pmf)
    spectrum = sp_fft.rfft(folded)
    powered = sp_fft.irfft(spectrum**count, n=size)                       # (size,) index j ↔ count·offset + j
    window = powered[(np.arange(lo, hi + 1) - count * pld.offset) % size]  # (hi − lo + 1,)
    # Mass above the window may have wrapped onto smaller losses: count its Chernoff bound at +∞ instead.
    return truncate(_make(pld.interval, lo, window, infinity + tail_mass), tail_mass)


# ---------------------------------------------------------------------------------------------
# (ε, δ) from a PLD

def delta_for_epsilon(pld: DiscretePLD, epsilon: float) -> float:
    """δ(ε) = Σ_{l > ε} ω(l)·(1 − e^{ε − l}) + ω(+∞)."""
    return _delta_at(pld, pld.losses, epsilon)


def _delta_at(pld: DiscretePLD, losses: np.ndarray, epsilon: float) -> float:
    first = int(np.searchsorted(losses, epsilon, side="right"))           # losses are sorted: l > ε from here
    return float(pld.infinity_mass + np.dot(pld.pmf[first:], -np.expm1(epsilon - losses[first:])))


def epsilon_for_delta(pld: DiscretePLD, delta: float) -> float:
    """The smallest ε ≥ 0 with δ(ε) ≤ δ (+∞ when the mass at +∞ alone exceeds δ).

    δ(ε) is continuous and decreasing; between two grid losses l_k ≤ ε < l_{k+1} it is
    A − e^{ε}·B with A = Σ_{j>k} ω_j + ω(∞), B = Σ_{j>k} ω_j e^{−l_j}, so ε = log((A − δ)/B) exactly.
    """
    if pld.infinity_mass > delta:
        return math.inf
    losses = pld.losses
    if _delta_at(pld, losses, 0.0) <= delta:
        return 0.0
    # The crossing lies just above the largest grid loss l_k ≥ 0 with δ(l_k) > δ, or in [0, l_first) when
    # there is none (δ at grid losses decreases with k; at the last one it is ω(∞) ≤ δ). Bisection:
    lo, hi = int(np.searchsorted(losses, 0.0)), losses.size - 1
    if _delta_at(pld, losses, losses[lo]) <= delta:
        k, reference = lo - 1, 0.0
    else:                                          # invariant: δ(l_lo) > δ ≥ δ(l_hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _delta_at(pld, losses, losses[mid]) > delta:
                lo = mid
            else:
                hi = mid
        k, reference = lo, float(losses[lo])
    rest, rest_losses = pld.pmf[k + 1:], losses[k + 1:]
    a = pld.infinity_mass + rest.sum()
    b = np.sum(rest * np.exp(reference - rest_losses))                    # B·e^{reference}, no overflow
    return max(0.0, reference + math.log((a - delta) / b))


# ---------------------------------------------------------------------------------------------
# The accountant

@functools.lru_cache(maxsize=64)
def _segment_pld(sigma: float, q: float, steps: int, direction: str, interval: float) -> DiscretePLD:
    if q == 1.0 and direction == "add":   # no subsampling: both adjacencies have L ~ N(1/(2σ²), 1/σ²)
        return _segment_pld(sigma, q, steps, "remove", interval)
    one = subsampled_gaussian_pld(noise_multiplier=sigma, sample_rate=q, direction=direction, interval=interval)
    return self_compose(one, steps)


def ledger_pld(ledger, *, direction: str, interval: float = DEFAULT_INTERVAL) -> DiscretePLD:
    """The composed PLD of every segment of ``ledger`` (one adjacency)."""
    total = identity_pld(interval)
    for seg in ledger:
        total = compose(total, _segment_pld(seg.noise_multiplier, seg.sample_rate, seg.steps, direction,
                                            interval))
    return total


class PLDAccountant(LedgerAccountant):
    """Keeps the ledger of DP steps and converts it to (ε, δ) through the privacy loss distribution.

    A drop-in for ``RDPAccountant``: ``step``, ``get_epsilon``, ``get_epsilon_and_order`` (the order is
    NaN: a PLD has none), ``get_delta``, ``state_dict`` / ``from_state_dict``. The ledger is the whole
    state; the PLD is recomputed from it (cached per ledger), so ε is a function of the ledger alone.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL):
        interval = float(interval)
        if not 0.0 < interval <= 0.1:
            raise PrivacyError(f"PLD interval must be in (0, 0.1], got {interval!r}")
        super().__init__()
        self.interval = interval
        self._cached: tuple | None = None           # (ledger tuple, {direction: DiscretePLD})

    def plds(self) -> dict:
        """{"remove": DiscretePLD, "add": DiscretePLD} of everything recorded so far."""
        key = tuple(self._ledger)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, {d: ledger_pld(self._ledger, direction=d, interval=self.interval)
                                  for d in DIRECTIONS})
        return self._cached[1]

    def get_epsilon(self, delta: float) -> float:
        """ε at target δ: the larger over the two adjacencies."""
        delta = check_delta(delta)
        return max(epsilon_for_delta(pld, delta) for pld in self.plds().values())

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(ε, NaN): the RDPAccountant signature; a PLD has no Rényi order."""
        return self.get_epsilon(delta), math.nan

    def get_delta(self, epsilon: float) -> float:
        """δ at target ε ≥ 0: the larger over the two adjacencies."""
        eps = float(epsilon)
        if not eps >= 0.0:
            raise PrivacyError(f"epsilon must be a number >= 0, got {epsilon!r}")
        return min(1.0, max(delta_for_epsilon(pld, eps) for pld in self.plds().values()))

    def state_dict(self) -> dict:
        """The ledger and grid interval as plain JSON-serialisable types."""
        return {"accountant": "pld", "interval": self.interval,
                "ledger": [seg.to_dict() for seg in self._ledger]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PLDAccountant":
        """Rebuild an accountant from ``state_dict()`` output (e.g. read back from JSON)."""
        if not isinstance(state, dict) or not isinstance(state.get("ledger"), list):
            raise PrivacyError("accountant state must be a dict with a 'ledger' list")
        acc = cls(interval=state.get("interval", DEFAULT_INTERVAL))
        acc._ledger = ledger_from_state(state["ledger"])
        return acc


def pld_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                interval: float = DEFAULT_INTERVAL) -> float:
    """ε of ``steps`` identical steps (the PLD accountant in one call)."""
    acc = PLDAccountant(interval)
    acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    return acc.get_epsilon(delta)
