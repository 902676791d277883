"""Stress the fast denoiser against the exact reference: how often do they disagree?

    python -m scripts.bench.stress_fast_denoiser [--trials 300] [--kappa 1.02] [--json out.json]

The fast path's stopping rule bounds the distance of each Ritz value to *some* singular value, not to
λ_{k+1}, so its equality with the reference is an empirical property. Each trial plants 0–3 signals in a
random m×n Gaussian matrix (m, n ∈ [24, 160]) with noisy singular values near the κ threshold
(0.98–1.12 × κ × edge) or clearly above it, in float64, and compares kept counts and outputs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from minidp.denoise import denoise_group, rmt_denoise_with_stats
from tests.denoise.planted import planted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--kappa", type=float, default=1.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the counts here")
    opts = parser.parse_args()
    rng = np.random.default_rng(opts.seed)
    kept_mismatch, worst, near = 0, 0.0, 0
    started = time.perf_counter()
    for trial in range(opts.trials):
        m, n = (int(v) for v in rng.integers(24, 161, size=2))
        k = int(rng.integers(0, 4))
        ratios = [float(opts.kappa * rng.uniform(0.98, 1.12)) if rng.random() < 0.6 else float(rng.uniform(1.3, 4))
                  for _ in range(k)]
        near += sum(r < 1.12 * opts.kappa for r in ratios)
        _, G = planted(m, n, 1.0, ratios, rng)
        ref, st_ref = rmt_denoise_with_stats(G, 1.0, opts.kappa)
        (out,), (st_fast,) = denoise_group([G], 1.0, kappa=opts.kappa, seed=trial)
        if st_fast["kept"] != st_ref["kept"]:
            kept_mismatch += 1
        worst = max(worst, float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-300)))
    result = {"trials": opts.trials, "kappa": opts.kappa, "planted_near_threshold": near,
              "kept_count_mismatches": kept_mismatch, "max_relative_difference": worst,
              "seconds": time.perf_counter() - started,
              "command": "python -m scripts.bench.stress_fast_denoiser " + " ".join(sys.argv[1:])}
    print(json.dumps(result))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
