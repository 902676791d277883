"""The statistics of the study reports (scripts/study/study_report.py, scripts/study/paper_table.py), on plain dicts.

    mean_sd(values)          {"n", "mean", "sd"} (sd with ddof = 1; None below 2 values; None values skipped)
    paired(a, b)             b − a over the seeds in both ({seed: value}), mean and a 95% t-interval
                             mean ± t_{0.975, n−1} · sd / √n
    steps_to(curve, x)       the first evaluated step whose accuracy is ≥ x ({step: accuracy}), or None
    read_at(curve, step)     (the evaluated step read, its accuracy): the last evaluation at or before step
    one_sided(a, b)          paired(a, b) with the one-sided t-test of H1: mean(b − a) > 0 (t, df, p)
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

MIN_SEEDS = 3  # fewer finished seeds in an arm: numbers listed, no conclusion drawn
# two-sided 95% t quantiles t_{0.975, df}; df > 30 uses 1.96
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042}


def t975(df: int) -> float:
    if df <= 0:
        return float("nan")
    if df in T975:
        return T975[df]
    below = [k for k in T975 if k <= df]
    return T975[max(below)] if df <= 30 else 1.96


def steps_to(curve: dict, threshold: float):
    for step, acc in sorted(curve.items()):
        if acc is not None and acc >= threshold:
            return step
    return None


def mean_sd(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "mean": None, "sd": None}
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"n": len(values), "mean": float(np.mean(values)), "sd": sd}


def paired(a: dict, b: dict) -> dict:
    """Paired difference b − a over seeds present in both ({seed: value}), with a 95% t-interval."""
    seeds = sorted(s for s in a if s in b and a[s] is not None and b[s] is not None)
    diffs = [b[s] - a[s] for s in seeds]
    out = {"seeds": seeds, "differences": diffs, "mean": None, "ci95": None}
    if diffs:
        out["mean"] = float(np.mean(diffs))
    if len(diffs) >= 2:
        half = t975(len(diffs) - 1) * float(np.std(diffs, ddof=1)) / math.sqrt(len(diffs))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def read_at(curve: dict, step: int):
    """(the evaluated step read, its accuracy): the last evaluation at or before ``step``; (None, None) if none."""
    before = [s for s in curve if s <= step and curve[s] is not None]
    return (max(before), curve[max(before)]) if before else (None, None)


def one_sided(a: dict, b: dict) -> dict:
    """:func:`paired` (b − a) plus the one-sided paired t-test of H1: the mean difference is > 0:
    t = mean / (sd / √n), p = P(T_{n−1} ≥ t). Needs 2 pairs and a non-zero spread (else t and p are None)."""
    out = paired(a, b)
    n = len(out["differences"])
    sd = float(np.std(out["differences"], ddof=1)) if n >= 2 else 0.0
    out.update(n=n, t=None, df=n - 1 if n >= 2 else None, p_one_sided=None)
    if n >= 2 and sd > 0:
        out["t"] = out["mean"] / (sd / math.sqrt(n))
        out["p_one_sided"] = float(stats.t.sf(out["t"], n - 1))
    return out
