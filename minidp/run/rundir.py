"""The run directory: what `minidp train --out RUN_DIR` writes, and which of it the guarantee covers.

    RUN_DIR/config.json                 the configuration and privacy plan            (public by design)
    RUN_DIR/metrics.jsonl               one release-safe row per step / evaluation    (see OUTPUT_PRIVACY)
    RUN_DIR/metrics_nonprivate.jsonl    statistics of the private batches: NOT covered by the guarantee
    RUN_DIR/checkpoint/                 resume state: as sensitive as the training data (minidp/run/checkpoint.py)
    RUN_DIR/summary.json                written last: its presence means the run finished
    RUN_DIR/model/                      the fine-tuned model (covered: post-processing of the releases)
    RUN_DIR/FAILED                      instead of summary.json and model/ when the run went non-finite:
                                        the summary up to that step (the ε it spent), as JSON

Every JSON file is strict JSON: a non-finite float is written as null (``json_safe``), never NaN/Infinity.

A run directory is never silently reused: ``check_usable`` refuses an existing run unless the caller
resumes it or asked to overwrite it, and nothing is written before every input has been checked.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from minidp.backend import array_module, to_host
from minidp.run.checkpoint import CANDIDATES, has_checkpoint
from minidp.errors import ConfigError

METRICS = "metrics.jsonl"
NONPRIVATE_METRICS = "metrics_nonprivate.jsonl"
FAILED = "FAILED"  # the failed-run marker (scripts/reproduce.py reads the same name)
RUN_FILES = ("config.json", METRICS, NONPRIVATE_METRICS, "summary.json", FAILED, "plots.png", "model") + CANDIDATES

# Every output field and whether the (ε, δ) guarantee covers it (summary.json repeats this).
OUTPUT_PRIVACY = {
    "covered (post-processing of the noisy releases)": [
        "model/", "metrics.jsonl: step, epsilon, lr, params_fingerprint, denoise_kept, denoise_kept_total",
        "summary.json: epsilon, delta, noise_multiplier, sample_rate, steps, planned_steps, rdp_order, "
        "target_epsilon, max_grad_norm, expected_batch_size, train_examples, denoise_kept_total, "
        "denoise_steps_with_kept, extra_charged_steps, stopped_early, accountant"],
    "public by design (chosen before the run, not computed from private data)": [
        "config.json (includes the seed: with --seed the noise is reproducible and the run is not private "
        "against anyone who knows it)"],
    "held-out data, NOT protected (the guarantee is about the training set only)": [
        "metrics.jsonl: eval", "summary.json: final_eval"],
    "NOT covered: computed from the private batches without noise": [
        "metrics_nonprivate.jsonl: batch_size (realised), loss, clipped_fraction, dropped_nonfinite, seconds, "
        "diagnostics_non_private",
        "FAILED: the step at which a non-finite training loss stopped the run (the loss is that of the private "
        "batch)"],
    "as sensitive as the training data": ["checkpoint/ (holds the noise and sampling streams' states)"],
}

# The same table for a --non-private reference run: it has no guarantee, so nothing it writes is covered.
NOT_PRIVATE_OUTPUT = {
    "NOT covered: a non-private reference run (σ = 0, clipping off, nothing accounted; ε = ∞)": [
        "model/", "metrics.jsonl", "metrics_nonprivate.jsonl", "summary.json"],
    "public by design (chosen before the run, not computed from private data)": ["config.json"],
    "as sensitive as the training data": ["checkpoint/"],
}


def params_sums(params: dict, names) -> np.ndarray:
    """Σθ and Σθ² (float64) of each named parameter, sorted by name: (P, 2) on the host, one copy per call.

    All finite exactly when every parameter is (float32 parameters cannot overflow Σθ² in float64).
    """
    names = sorted(names)
    xp = array_module(params[names[0]])
    sums = xp.stack([xp.stack([params[n].sum(dtype=xp.float64), (params[n].astype(xp.float64) ** 2).sum()])
                     for n in names])  # (P, 2)
    return to_host(sums)


def params_fingerprint(params: dict, names, sums: np.ndarray | None = None) -> str:
    """A short hash of ``params_sums`` (pass ``sums`` when already computed).

    Logged with every step so that a replay after a resume can be checked bit for bit against the steps
    logged before the interruption. A function of the released model, so publishing it is safe.
    """
    sums = params_sums(params, names) if sums is None else sums
    return hashlib.sha256(np.ascontiguousarray(sums).tobytes()).hexdigest()[:16]


def _read_rows(path: Path) -> list[dict]:
    """The JSON rows of a .jsonl file; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def json_safe(obj):
    """``obj`` with NumPy scalars/arrays as Python values and every non-finite float as None (strict JSON)."""
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(value) for value in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def strict_dumps(obj, **kw) -> str:
    """json.dumps of ``json_safe(obj)``, refusing NaN/Infinity (none can be left)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


class RunDir:
    """One run directory (see module docstring)."""

    def __init__(self, path):
        self.path = Path(path)

    def holds_run(self) -> list[str]:
        """The run files already present (empty: the directory is free to use)."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def check_usable(self, *, resume: bool, overwrite: bool) -> None:
        """Refuse (ConfigError) a directory that cannot be used as asked; reads only."""
        if resume:
            if overwrite:
                raise ConfigError("--overwrite cannot be combined with --resume")
            if (self.path / "summary.json").exists():
                raise ConfigError(f"--resume {self.path}: the run already finished (summary.json exists)")
            if (self.path / FAILED).exists():
                raise ConfigError(f"--resume {self.path}: the run failed ({self.path / FAILED}); start it again "
                                  f"with --out {self.path} --overwrite")
            if not has_checkpoint(self.path):
                raise ConfigError(f"--resume {self.path}: no checkpoint there (expected {self.path}/checkpoint/)")
            return
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path}: exists and is not a directory")
        present = self.holds_run()
        if present and not overwrite:
            resumable = has_checkpoint(self.path) and not (self.path / FAILED).exists()
            hint = f"--resume {self.path} to continue it, " if resumable else ""
            raise ConfigError(f"--out {self.path}: already holds a run ({', '.join(present)}); use {hint}"
                              f"--overwrite to replace it, or another directory")

    def start(self, *, overwrite: bool, config: dict) -> None:
        """Create the directory (clearing an old run's files with ``overwrite``), write config.json."""
        if overwrite:
            for name in self.holds_run():
                target = self.path / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json("config.json", config)
        for name in (METRICS, NONPRIVATE_METRICS):
            (self.path / name).write_text("")

    def truncate_after(self, step: int) -> tuple[list[dict], dict]:
        """Drop rows logged after ``step`` (the checkpoint) from both metrics files before they are recomputed.

        Returns (the kept release-safe step rows, {step: params_fingerprint} of the dropped ones).
        """
        rows = _read_rows(self.path / METRICS)
        kept = [r for r in rows if r.get("step", 0) <= step and not r.get("final")]
        dropped = {r["step"]: r["params_fingerprint"] for r in rows
                   if r.get("step", 0) > step and "params_fingerprint" in r}
        self._rewrite(METRICS, kept)
        self._rewrite(NONPRIVATE_METRICS, [r for r in _read_rows(self.path / NONPRIVATE_METRICS)
                                           if r.get("step", 0) <= step])
        return [r for r in kept if "params_fingerprint" in r], dropped

    def log(self, row: dict, nonprivate_row: dict | None) -> None:
        """Append one release-safe row to metrics.jsonl and the step's non-private one to its own file."""
        for name, item in ((METRICS, row), (NONPRIVATE_METRICS, nonprivate_row)):
            if item is not None:
                with (self.path / name).open("a") as f:
                    f.write(strict_dumps(item) + "\n")

    def write_json(self, name: str, obj) -> None:
        """Write RUN_DIR/name atomically (a temporary file renamed over it)."""
        tmp = self.path / (name + ".tmp")
        tmp.write_text(strict_dumps(obj, indent=2) + "\n")
        os.replace(tmp, self.path / name)

    def mark_failed(self, summary: dict) -> None:
        """Write RUN_DIR/FAILED: the run went non-finite; ``summary`` says where and what it spent."""
        self.write_json(FAILED, summary)

    def _rewrite(self, name: str, rows: list[dict]) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text("".join(strict_dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.path / name)
