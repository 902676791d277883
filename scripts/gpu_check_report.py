"""The last step of scripts/gpu_check.sh: gather its outputs into one JSON file and print every figure.

    python -m scripts.gpu_check_report OUT_DIR

Reads OUT_DIR/device.json, pytest_cuda.xml (JUnit), bench_step.json, bench_denoise.json and the exit
statuses (*.rc); writes OUT_DIR/gpu_check.json = {"device", "suite", "dp_step", "denoiser", "exit_status",
"figures"}, where "figures" lists every figure by name (None where it could not be measured, with the
reason in "missing"). Prints one line per figure. Exit status 0 when every step ran and the suite passed.
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

STEPS = ("pytest", "bench_step", "bench_denoise")
DP_FIGURES = {  # name in the report: key in bench_step.json's headline
    "dp_s": "dp_s", "nonprivate_s": "nonprivate_s", "opacus_hooks_s": "opacus_s", "opacus_ghost_s": "opacus_ghost_s",
    "dp_over_nonprivate": "ratio_dp_nonprivate", "dp_over_opacus_hooks": "ratio_dp_opacus",
    "dp_over_opacus_ghost": "ratio_dp_opacus_ghost",
}
PEAK_METHODS = ("minidp_nonprivate", "minidp_dp", "opacus_hooks", "opacus_ghost")
DENOISE_FIGURES = ("fast_s", "exact_s", "dp_step_s", "fast_overhead")


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def suite_figures(xml_path: Path) -> dict | None:
    """Counts, time and failed test ids from pytest's JUnit XML (None if there is none)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = lambda key: sum(int(s.get(key, 0)) for s in suites)  # noqa: E731
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    tests, failures, errors, skipped = count("tests"), count("failures"), count("errors"), count("skipped")
    return {"tests": tests, "passed": tests - failures - errors - skipped, "failed": failures, "errors": errors,
            "skipped": skipped, "seconds": round(sum(float(s.get("time", 0)) for s in suites), 1),
            "failed_tests": failed}


def dp_step_figures(data: dict | None) -> dict | None:
    if not data:
        return None
    out = {"setting": data.get("headline_setting"), "device": data.get("device"), "note": data.get("note"),
           "memory": data.get("memory")}
    out.update({name: data.get(key) for name, key in DP_FIGURES.items()})
    peaks = data.get("peak_mb") or {}
    out["peak_mb"] = {m: peaks.get(m) for m in PEAK_METHODS}
    return out


def denoiser_figures(data: dict | None) -> dict | None:
    if not data:
        return None
    return {model: {**{k: r.get(k) for k in DENOISE_FIGURES},
                    "max_rel_diff_fast_vs_exact": max(c["max_rel_diff_fast_vs_exact"] for c in r["cases"].values())}
            for model, r in data.items()}


def flatten(report: dict) -> dict:
    """Every figure under a dotted name."""
    figures = {}
    suite = report["suite"] or {}
    for key in ("tests", "passed", "failed", "errors", "skipped", "seconds"):
        figures[f"suite.{key}"] = suite.get(key)
    dp = report["dp_step"] or {}
    for name in DP_FIGURES:
        figures[f"dp_step.{name}"] = dp.get(name)
    for method in PEAK_METHODS:
        figures[f"dp_step.peak_mb.{method}"] = (dp.get("peak_mb") or {}).get(method)
    for model, values in (report["denoiser"] or {"(none)": {}}).items():
        for key in (*DENOISE_FIGURES, "max_rel_diff_fast_vs_exact"):
            figures[f"denoiser.{model}.{key}"] = values.get(key)
    return figures


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    exit_status = {}
    for step in STEPS:
        try:
            exit_status[step] = int((out / f"{step}.rc").read_text().strip())
        except (OSError, ValueError):
            exit_status[step] = None
    report = {"device": _json(out / "device.json"), "suite": suite_figures(out / "pytest_cuda.xml"),
              "dp_step": dp_step_figures(_json(out / "bench_step.json")),
              "denoiser": denoiser_figures(_json(out / "bench_denoise.json")), "exit_status": exit_status}
    report["figures"] = flatten(report)
    report["missing"] = [name for name, value in report["figures"].items() if value is None]
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")

    device = report["device"] or {}
    print(f"\ngpu_check on {device.get('gpu', '?')} (CuPy {device.get('cupy', '?')})"
          + ("  [STAND-IN: CPU smoke test, not GPU figures]" if device.get("stand_in") else ""))
    for name, value in report["figures"].items():
        shown = "not measured" if value is None else (f"{value:.4g}" if isinstance(value, float) else value)
        print(f"  {name:48s} {shown}")
    for test in (report["suite"] or {}).get("failed_tests", []):
        print(f"  FAILED on cuda: {test}")
    print(f"  exit status of each step: {exit_status}")
    print(f"wrote {out / 'gpu_check.json'}")
    ok = all(v == 0 for v in exit_status.values()) and report["suite"] is not None
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
