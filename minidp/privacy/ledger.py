"""What every accountant records: the ledger of (σ, q, steps) segments, and the checks of its arguments.

    ledger: list[Segment] = []
    record_steps(ledger, noise_multiplier=1.0, sample_rate=0.01, steps=1000)   # merges equal (σ, q)
    ledger_from_state(state["ledger"])                                          # JSON -> segments

The ledger is the whole state of an accountant (RDP in ``accountant.py``, PLD in ``pld.py``): each
recomputes its ε from it, so a checkpoint stores only this list. The checks name the argument, as the CLI
prints their messages verbatim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from minidp.errors import PrivacyError


def check_noise_multiplier(noise_multiplier: float) -> float:
    sigma = float(noise_multiplier)
    if not sigma >= 0.0 or math.isinf(sigma):            # also rejects NaN
        raise PrivacyError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}")
    return sigma


def check_sample_rate(sample_rate: float) -> float:
    q = float(sample_rate)
    if not 0.0 <= q <= 1.0:
        raise PrivacyError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
    return q


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 0:
        raise PrivacyError(f"steps must be a whole number >= 0, got {steps!r}")
    return int(steps)


def check_delta(delta: float) -> float:
    d = float(delta)
    if not 0.0 < d < 1.0:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    return d


@dataclass(frozen=True)
class Segment:
    """``steps`` consecutive Poisson-subsampled Gaussian steps with the same (σ, q)."""

    noise_multiplier: float   # σ: noise std / clipping norm, e.g. 1.0
    sample_rate: float        # q: Poisson inclusion probability of each example, e.g. 256/67349
    steps: int                # number of steps, ≥ 1

    def to_dict(self) -> dict:
        return {"noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps": self.steps}


def record_steps(ledger: list, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
    """Append ``steps`` steps with (σ, q) to ``ledger`` in place; merged into the last segment when (σ, q)
    are equal, so a long run stays one or a few segments. ``steps = 0`` records nothing."""
    sigma = check_noise_multiplier(noise_multiplier)
    q = check_sample_rate(sample_rate)
    steps = check_steps(steps)
    if steps == 0:
        return
    last = ledger[-1] if ledger else None
    if last is not None and last.noise_multiplier == sigma and last.sample_rate == q:
        ledger[-1] = Segment(sigma, q, last.steps + steps)
    else:
        ledger.append(Segment(sigma, q, steps))


def ledger_from_state(entries) -> list:
    """The segments of a ``state_dict()["ledger"]`` list (e.g. read back from JSON), checked and merged."""
    if not isinstance(entries, list):
        raise PrivacyError("accountant state must be a dict with a 'ledger' list")
    ledger: list = []
    for k, seg in enumerate(entries):
        try:
            sigma, q, steps = seg["noise_multiplier"], seg["sample_rate"], seg["steps"]
        except (KeyError, TypeError) as err:
            raise PrivacyError(f"accountant state: ledger[{k}] lacks field {err}") from None
        record_steps(ledger, noise_multiplier=sigma, sample_rate=q, steps=steps)
    return ledger


class LedgerAccountant:
    """What every accountant shares: the ledger of (σ, q, steps) segments, which is its whole state.

    Subclasses (RDPAccountant, PLDAccountant) turn the ledger into (ε, δ) their own way."""

    def __init__(self):
        self._ledger: list[Segment] = []

    @property
    def ledger(self) -> list[Segment]:
        """The segments in the order taken (a copy)."""
        return list(self._ledger)

    @property
    def total_steps(self) -> int:
        return sum(seg.steps for seg in self._ledger)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` steps of the subsampled Gaussian with (σ, q); merges with the last segment
        when (σ, q) are equal, so the ledger stays small over a long run."""
        record_steps(self._ledger, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)

