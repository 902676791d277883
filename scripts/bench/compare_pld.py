"""minidp's PLD accountant against dp-accounting's (the oracle) and the RDP accountant, on the grid below.

    python -m scripts.bench.compare_pld            # ~3 minutes on 2 cores; prints one line per point and a summary

Grid: q ∈ {1e-4, 1e-3, 0.01, 0.1, 0.5} × σ ∈ {0.6, 1, 2, 5} × steps ∈ {1, 100, 1e4} × δ ∈ {1e-8, 1e-5, 1e-3}.
The PLD contract applies where ε ≤ 50: |ε − ε_dp| ≤ 1 % ε + 0.02, and PLD ≤ RDP everywhere.
"""
from __future__ import annotations

import itertools
import warnings

from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant

from minidp.privacy import PLDAccountant, RDPAccountant


def main() -> None:
    warnings.simplefilter("ignore")
    rows = []
    for q, sigma, steps in itertools.product([1e-4, 1e-3, 0.01, 0.1, 0.5], [0.6, 1.0, 2.0, 5.0], [1, 100, 10_000]):
        ours = PLDAccountant()
        ours.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
        theirs = pld_privacy_accountant.PLDAccountant()
        theirs.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
        rdp = RDPAccountant()
        rdp.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
        for delta in [1e-8, 1e-5, 1e-3]:
            row = (q, sigma, steps, delta, ours.get_epsilon(delta), theirs.get_epsilon(delta), rdp.get_epsilon(delta))
            rows.append(row)
            print("q={:g} sigma={:g} steps={} delta={:g}: pld {:.6f}  dp-accounting {:.6f}  rdp {:.4f}".format(*row),
                  flush=True)
    contract = [r for r in rows if r[5] <= 50]
    diffs = [r[4] - r[5] for r in contract]
    print(f"{len(contract)} of {len(rows)} points with eps <= 50: ours - dp-accounting in "
          f"[{min(diffs):.2e}, {max(diffs):+.2e}]; within 1% + 0.02: "
          f"{all(abs(r[4] - r[5]) <= 0.01 * r[5] + 0.02 for r in contract)}; "
          f"PLD <= RDP everywhere: {all(r[4] <= r[6] + 1e-9 for r in rows)}")


if __name__ == "__main__":
    main()
