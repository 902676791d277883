"""Atomic run checkpoints: everything a DP run needs to continue bit for bit after a crash.

    save_checkpoint(run_dir, state)          # RUN_DIR/checkpoint/ (the previous one kept as checkpoint.prev/)
    state = load_checkpoint(run_dir)         # the newest complete checkpoint whose checksums match

A checkpoint holds the trainable parameters, the optimizer state, every random stream's state, the step
index (which fixes the learning-rate schedule position) and the accountant's ledger:

    checkpoint/
      params.safetensors      {hf_name: array}  trainable parameters (and a freshly initialised head)
      optimizer.safetensors   {"<hf_name>/<buffer>": array}  Adam moments / momentum buffers
      state.json              {"step", "epsilon", "files": {name: sha256}, "optimizer", "streams",
                               "accountant", "extra"}   (written last)

Atomicity. A new checkpoint is built in ``checkpoint.new/`` (every file fsync'ed, state.json last), then
``checkpoint/`` is renamed to ``checkpoint.prev/`` and ``checkpoint.new/`` to ``checkpoint/``. A SIGKILL
at any instant leaves at least one complete checkpoint among the three names; ``load_checkpoint`` checks
every candidate's checksums and takes the complete one with the highest step, reporting any it rejects.

Privacy: a checkpoint holds the noise and sampling streams' states, so whoever has it can regenerate the
noise of every later step. Treat a checkpoint directory as being as sensitive as the training data.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

from minidp.backend import to_host
from minidp.errors import DataError

CHECKPOINT = "checkpoint"  # the current checkpoint
PREVIOUS = "checkpoint.prev"  # the one before it, kept until the next one is complete
BUILDING = "checkpoint.new"  # a checkpoint being written
CANDIDATES = (CHECKPOINT, BUILDING, PREVIOUS)
STATE_FILE = "state.json"
PARAMS_FILE = "params.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


def sha256_of(path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _safetensors_bytes(tensors: dict) -> bytes:
    return save({k: np.ascontiguousarray(to_host(v)) for k, v in tensors.items()})


def _split_optimizer_state(optimizer_state: dict) -> tuple[dict, dict]:
    """Optimizer.state_dict() -> (arrays {"name/buffer": array}, the rest as JSON-safe numbers)."""
    arrays, scalars = {}, {}
    for name, buffers in optimizer_state["state"].items():
        scalars[name] = {}
        for key, value in buffers.items():
            if isinstance(value, (int, float)):
                scalars[name][key] = value
            else:
                arrays[f"{name}/{key}"] = value
    return arrays, {"lr": optimizer_state["lr"], "state": scalars}


def _join_optimizer_state(arrays: dict, meta: dict) -> dict:
    state = {name: dict(scalars) for name, scalars in meta["state"].items()}
    for key, value in arrays.items():
        name, buffer = key.rsplit("/", 1)
        state.setdefault(name, {})[buffer] = value
    return {"lr": meta["lr"], "state": state}


def save_checkpoint(run_dir, *, step: int, epsilon: float, params: dict, optimizer_state: dict,
                    streams_state: dict, accountant_state: dict, extra: dict | None = None) -> Path:
    """Write RUN_DIR/checkpoint/ atomically (see module docstring); return its path.

    params: {hf_name: array} to restore (host or device arrays); optimizer_state: ``Optimizer.state_dict()``;
    streams_state: ``RandomStreams.state_dict()``; accountant_state: the accountant's ``state_dict()``.
    """
    run_dir = Path(run_dir)
    building = run_dir / BUILDING
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    opt_arrays, opt_meta = _split_optimizer_state(optimizer_state)
    files = {PARAMS_FILE: _safetensors_bytes(params), OPTIMIZER_FILE: _safetensors_bytes(opt_arrays)}
    for name, data in files.items():
        _write_bytes(building / name, data)
    state = {"step": int(step), "epsilon": float(epsilon) if math.isfinite(epsilon) else None,  # None: ε = ∞
             "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
             "optimizer": opt_meta, "streams": streams_state, "accountant": accountant_state,
             "extra": extra or {}}
    _write_bytes(building / STATE_FILE, (json.dumps(state, indent=1) + "\n").encode())
    _fsync_dir(building)
    # swap: checkpoint -> checkpoint.prev, checkpoint.new -> checkpoint (each rename is atomic)
    current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    if current.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(current, previous)
    os.replace(building, current)
    _fsync_dir(run_dir)
    return current


def read_state(folder) -> dict:
    """The state.json of one checkpoint folder after checking every file's sha256 (DataError if not)."""
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        raise DataError(f"{folder / STATE_FILE}: missing (incomplete checkpoint)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{folder / STATE_FILE}: unreadable ({err})") from None
    for name, expected in state.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing (incomplete checkpoint)")
        if sha256_of(path) != expected:
            raise DataError(f"{path}: checksum mismatch (corrupt or truncated checkpoint)")
    return state


def has_checkpoint(run_dir) -> bool:
    """True if RUN_DIR holds any checkpoint folder (complete or not)."""
    return any((Path(run_dir) / name).is_dir() for name in CANDIDATES)


def load_checkpoint(run_dir, *, report=print) -> dict:
    """The newest complete checkpoint of RUN_DIR as a dict:

    {"step", "epsilon", "params": {name: np.ndarray}, "optimizer": Optimizer.state_dict() form,
     "streams", "accountant", "extra", "path"}

    Candidates whose checksums fail are reported through ``report`` and skipped; DataError if none is good.
    """
    run_dir = Path(run_dir)
    good, problems = [], []
    for name in CANDIDATES:
        folder = run_dir / name
        if not folder.is_dir():
            continue
        try:
            good.append((read_state(folder)["step"], folder))
        except DataError as err:
            problems.append(str(err))
    for problem in problems:
        report(f"checkpoint rejected: {problem}")
    if not good:
        why = f" ({'; '.join(problems)})" if problems else ""
        raise DataError(f"{run_dir}: no usable checkpoint to resume from{why}")
    step, folder = max(good, key=lambda pair: pair[0])
    state = read_state(folder)
    if problems:
        report(f"resuming from {folder} (step {step})")
    epsilon = math.inf if state["epsilon"] is None else float(state["epsilon"])  # a non-private run: ε = ∞
    return {"step": int(state["step"]), "epsilon": epsilon,
            "params": load_file(str(folder / PARAMS_FILE)),
            "optimizer": _join_optimizer_state(load_file(str(folder / OPTIMIZER_FILE)), state["optimizer"]),
            "streams": state["streams"], "accountant": state["accountant"], "extra": state.get("extra", {}),
            "path": str(folder)}
