"""The attacker: scores of the canaries and their inclusion bits -> ε lower bounds.

Choices (how many guesses, a threshold) are made on one half of the canaries and applied once on the other;
the bounds themselves are minidp/privacy/lower_bounds.py (one-run bound, Clopper–Pearson threshold test).
"""
from __future__ import annotations

import math

import numpy as np

from minidp.privacy.lower_bounds import clopper_pearson_lower, hypothesis_test_epsilon, one_run_epsilon

ONE_RUN_DELTA_BUDGET = 0.01              # the one-run bound judges at most this / δ canaries (see ``attack``)
SELECTION_STRICTNESS = 20                # choices are made at error level (1 − confidence)/20 (see ``attack``)


# ---------------------------------------------------------------------------------------------
# The attacker: choose on one half of the canaries, bound on the other

def _guesses(scores, bits, f_in: float, f_out: float) -> tuple[int, int]:
    """(r, v): guess "in" for the top f_in and "out" for the bottom f_out of the canaries; v of r right."""
    ranked = bits[np.argsort(scores, kind="stable")]                        # bits by increasing score
    k_in, k_out = round(f_in * scores.size), round(f_out * scores.size)
    return k_in + k_out, int(ranked[scores.size - k_in:].sum() + (~ranked[:k_out]).sum())


def _guess_fractions(scores, bits, delta: float, confidence: float) -> tuple[float, float]:
    """(f_in, f_out) that maximise the one-run bound on ``scores``: every pair of fractions in {0, 2^−j}
    is ranked by a quick proxy (logit of the Clopper–Pearson lower accuracy), the best few by the bound."""
    n = scores.size
    fractions = [0.0] + [2.0**-j for j in range(1, 40) if 2.0**-j * n >= 1]
    proxies = []
    for f_in in fractions:
        for f_out in fractions:
            r, v = _guesses(scores, bits, f_in, f_out)
            if 0 < r <= n:
                acc = clopper_pearson_lower(v, r, confidence)
                proxies.append((math.log(acc / (1 - acc)) if 0 < acc < 1 else -math.inf, f_in, f_out))
    shortlist = sorted(proxies, reverse=True)[:6]

    def bound(pair):
        r, v = _guesses(scores, bits, *pair)
        return one_run_epsilon(guesses=r, correct=v, canaries=n, delta=delta, confidence=confidence)

    return max(((f_in, f_out) for _, f_in, f_out in shortlist), key=bound, default=(0.5, 0.0))


def _threshold_epsilon(scores, bits, threshold: float, delta: float, confidence: float) -> float:
    flagged = scores >= threshold
    return hypothesis_test_epsilon(true_positives=int((flagged & bits).sum()), positives=int(bits.sum()),
                                   false_positives=int((flagged & ~bits).sum()), negatives=int((~bits).sum()),
                                   delta=delta, confidence=confidence)


def _best_threshold(scores, bits, delta: float, confidence: float) -> float:
    """The score threshold (among the scores at geometric ranks from either end) that maximises the
    Clopper–Pearson bound on ``scores``."""
    ordered = np.sort(scores)
    n = ordered.size
    ranks = sorted({min(n - 1, round(2.0**-j * n)) for j in range(0, 40) if 2.0**-j * n >= 1})
    candidates = [ordered[n - 1 - k] for k in ranks] + [ordered[k] for k in ranks]
    return max(candidates, key=lambda t: _threshold_epsilon(scores, bits, t, delta, confidence))


def attack(scores, bits, *, delta: float, confidence: float, independent: bool) -> dict:
    """ε lower bounds from canary ``scores`` and inclusion ``bits`` (flat, all runs pooled; see module
    docstring). Returns epsilon_lower, the two bounds, and the one-run test's guesses / correct.

    The one-run bound's δ term grows with the number m of canaries (2mδ·α), so it judges at most
    ONE_RUN_DELTA_BUDGET/δ canaries (2mδ ≤ 0.02: m = 1000 at δ = 1e-5, as in Steinke et al.).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    bits = np.asarray(bits, dtype=bool).ravel()
    choose, judge = slice(0, None, 2), slice(1, None, 2)                   # even canaries choose, odd judge
    each = 1.0 - (1.0 - confidence) / 2.0 if independent else confidence
    # Choices are made at a stricter confidence than the judging: a choice that looks best only because a
    # few counts fell luckily on the choosing half rarely repeats on the judging half.
    strict = 1.0 - (1.0 - each) / SELECTION_STRICTNESS
    m = max(2, min(scores[judge].size, round(ONE_RUN_DELTA_BUDGET / delta)))
    f_in, f_out = _guess_fractions(scores[choose][:m], bits[choose][:m], delta, strict)
    guesses, correct = _guesses(scores[judge][:m], bits[judge][:m], f_in, f_out)
    one_run = one_run_epsilon(guesses=guesses, correct=correct, canaries=m, delta=delta, confidence=each)
    clopper = None
    if independent:
        threshold = _best_threshold(scores[choose], bits[choose], delta, strict)
        clopper = _threshold_epsilon(scores[judge], bits[judge], threshold, delta, each)
    return {"epsilon_lower": max(one_run, clopper or 0.0), "epsilon_lower_one_run": one_run,
            "epsilon_lower_clopper_pearson": clopper, "guesses": guesses, "correct": correct,
            "one_run_canaries": m}
