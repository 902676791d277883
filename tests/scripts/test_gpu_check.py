"""scripts/gpu_check.sh end to end on the CPU with the CuPy stand-in (a smoke test of the script), and the
benchmarks' --device cuda paths on the stand-in (no implicit host copy in them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts.bench import bench_denoise, bench_step

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_end_to_end_on_the_stand_in_and_names_every_figure(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "MINIDP_FAKE_CUPY": "1", "GPU_CHECK_QUICK": "1",
           "GPU_CHECK_QUICK_METHODS": "minidp_nonprivate,minidp_dp",
           "GPU_CHECK_PYTEST_ARGS": "tests/test_backend.py -k cupy_generators",
           # the script calls `python`: the interpreter running these tests, even from an inactive venv
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"]["stand_in"] is True and "STAND-IN" in done.stdout
    assert report["exit_status"] == {"pytest": 0, "bench_step": 0, "bench_denoise": 0}
    assert report["suite"]["passed"] == report["suite"]["tests"] == 1
    figures = report["figures"]
    for name in ("suite.passed", "suite.failed", "dp_step.dp_s", "dp_step.nonprivate_s", "dp_step.opacus_hooks_s",
                 "dp_step.dp_over_opacus_hooks", "dp_step.peak_mb.minidp_dp", "dp_step.peak_mb.opacus_hooks"):
        assert name in figures and f"  {name} " in done.stdout, name  # named, measured or not
    assert figures["dp_step.dp_s"] > 0 and figures["dp_step.opacus_hooks_s"] is None  # no Opacus run here
    overhead = [k for k in figures if k.startswith("denoiser.") and k.endswith(".fast_overhead")]
    assert len(overhead) == 1 and figures[overhead[0]] > 0
    assert report["dp_step"]["device"] == "cuda"


def test_bench_step_on_the_device_computes_the_host_gradient(stand_in):
    tiny = {"model": "minilm", "seq_len": 16, "batch": 4, "repeats": 1, "seed": 0, "max_grad_norm": 1.0,
            "layers": 1, "vocab_size": 2000, "method": "minidp_dp"}
    on_gpu = bench_step.run_measurement({**tiny, "device": "cuda"})
    on_cpu = bench_step.run_measurement({**tiny, "device": "cpu"})
    assert on_gpu["status"] == on_cpu["status"] == "ok", on_gpu
    assert on_gpu["device"] == "cuda" and "CuPy memory pool" in on_gpu["memory_method"]
    assert on_gpu["grad_norm"] == pytest.approx(on_cpu["grad_norm"], rel=1e-5)


def test_norm_of_device_gradients_makes_one_host_copy(stand_in):
    from tests import fake_cupy

    grads = {"a": stand_in.asarray(np.arange(6.0).reshape(2, 3)), "b": stand_in.ones(2**20 + 3, dtype=np.float32)}
    with fake_cupy.count_syncs() as syncs:
        norm = bench_step._norm_of(grads)
    assert syncs.total == 1 and norm == pytest.approx(np.sqrt(55.0 + 2**20 + 3))


def test_bench_denoise_on_the_device(stand_in, tmp_path):
    out = tmp_path / "denoise.json"
    assert bench_denoise.main(["--device", "cuda", "--shape", "1,32,64", "--dp-step-s", "1.0", "--json", str(out)]) == 0
    (data,) = json.loads(out.read_text()).values()
    assert data["device"] == "cuda" and data["fast_overhead"] == pytest.approx(data["fast_s"])
    for case in data["cases"].values():
        assert case["kept_exact"] == case["kept_fast"] and case["max_rel_diff_fast_vs_exact"] <= 1e-3
