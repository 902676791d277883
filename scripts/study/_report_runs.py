"""One finished (or unfinished) run of the study as the reports read it, and the number formats they share."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from scripts.study._study_stats import read_at


CHECKPOINT_STEPS = (25, 50, 100, 200)
REPORT_KEY = {"baseline": "baseline", "rmt": "denoised"}  # plan arm -> its key in a report; other arms keep names
PLAN_ARM = {key: arm for arm, key in REPORT_KEY.items()}  # the reverse



def read_jsonl(path) -> list[dict]:
    rows = []
    try:
        text = Path(path).read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return rows



def load_run(spec, ledger_rows: list[dict]) -> dict:
    """What a report needs of one run (finished or not)."""
    path = Path(spec.path)
    summary = None
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    rows = read_jsonl(path / "metrics.jsonl") + read_jsonl(path / "metrics_nonprivate.jsonl")
    try:
        fallback = (json.loads((path / "config.json").read_text()).get("denoise") or {}).get("fallback")
    except (OSError, ValueError):
        fallback = None
    curve, step_seconds, gains, cos_noisy, kept = {}, {}, {}, {}, {}
    denoised = {}  # "encoder" | "head": [matrix-steps with ≥ 1 component kept, matrix-steps denoised]
    final = None
    for row in rows:
        step = row.get("step")
        if "eval" in row and row["eval"]:
            if row.get("final"):
                final = (step, row["eval"].get("accuracy"))
            else:
                curve[step] = row["eval"].get("accuracy")
        if "denoise_kept_total" in row:
            kept[step] = row["denoise_kept_total"]
        for name, n in (row.get("denoise_kept") or {}).items():  # per matrix: components kept at this step
            part = denoised.setdefault("encoder" if ".encoder." in name else "head", [0, 0])
            part[0] += int(n > 0)
            part[1] += 1
        if "seconds" in row:
            step_seconds[step] = row["seconds"]
        diag = row.get("diagnostics_non_private")
        if diag and diag.get("whole"):
            gains[step] = diag["whole"].get("gain")
            cos_noisy[step] = diag["whole"].get("cos_noisy")
    if final is not None:
        curve[final[0]] = final[1]
    attempts = [r for r in ledger_rows if r.get("run") == spec.name]
    return {
        "name": spec.name, "setting": spec.setting, "arm": spec.arm, "seed": spec.seed, "role": spec.role,
        "path": str(path), "finished": summary is not None, "summary": summary,
        "curve": dict(sorted((int(k), v) for k, v in curve.items() if v is not None)),
        "final_accuracy": final[1] if (summary is not None and final) else None,
        "step_seconds_mean": float(np.mean(list(step_seconds.values()))) if step_seconds else None,
        "steps_logged": len(step_seconds),
        "gain": dict(sorted((int(k), v) for k, v in gains.items() if v is not None)),
        "kept": dict(sorted((int(k), int(v)) for k, v in kept.items())),
        "denoised_matrices": denoised, "denoise_fallback": fallback,
        "wall_seconds": float(sum(r.get("wall_seconds", 0.0) for r in attempts)),
        "cpu_seconds": float(sum(r.get("cpu_seconds") or 0.0 for r in attempts)),  # None: not measured
        "attempts": len(attempts), "command": attempts[-1]["command"] if attempts else None,
        "load": [r.get("load_start") for r in attempts],
        "blas_threads": sorted({r.get("blas_threads") or "1" for r in attempts}),  # older rows: reproduce's 1
    }



def accuracy_at(curve: dict, step: int):
    """The accuracy read at ``step``: the last evaluation at or before it (runs evaluated every 10 steps are
    read at 20 for step 25, as in the paper table)."""
    return read_at(curve, step)[1]



def machine() -> dict:

    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "note": "shared 2-core CPU VM; other work ran beside the study (load average per run attempt in "
                    "load_at_start)"}



def fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)



def fmt_signed(x) -> str:
    return "—" if x is None else f"{x:+.4f}"



def fmt_stats(st: dict) -> str:
    if not st or st.get("n", 0) == 0:
        return "—"
    return f"{st['mean']:.4f}" + (f" ± {st['sd']:.4f}" if st.get("sd") is not None else "") + f" (n={st['n']})"



def fmt_ci(pd) -> str:
    if not pd or pd.get("mean") is None:
        return "—"
    ci = pd.get("ci95")
    return f"{pd['mean']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else " (1 pair: no interval)") + \
        f" over seeds {pd['seeds']}"



def model_words(path: str) -> str:
    """The model as a reader elsewhere can find it: an installed package's model is named by its package
    (the absolute path of this machine's site-packages says nothing to anyone else)."""
    marker = "site-packages/"
    if marker in str(path):
        return f"`{str(path).split(marker, 1)[1]}` (installed package)"
    return f"`{path}`"



PEER_ARMS = ("opacus",)  # arms that run another implementation of the baseline
