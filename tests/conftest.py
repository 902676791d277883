"""Session set-up: the CuPy stand-in and the ``device`` fixture (tests that run on both backends).

    pytest                                         device tests on "cpu" and on "cuda" (the stand-in when
                                                   CuPy finds no GPU: tests/fake_cupy.py)
    MINIDP_TEST_DEVICES=cuda pytest                device tests on "cuda" only (scripts/gpu_check.sh)
    MINIDP_FAKE_CUPY=1 MINIDP_DEVICE=cuda pytest   the stand-in for the whole session, so everything that
                                                   follows MINIDP_DEVICE runs the GPU path on the CPU

A test asks for ``device`` and gets "cpu" or "cuda" with ``MINIDP_DEVICE`` set to it, so every default
(``device=None``) follows; it compares results through ``minidp.backend.to_host``.

Hypothesis profiles, registered here rather than left to Hypothesis's own CI detection:

    ci      CI=true: derandomised (the same examples on every run), no example database
    dev     otherwise: new random examples on every run, as a newcomer's `pytest` draws them
    seeds   scripts/property_seeds.py: random, no database, so ``--hypothesis-seed=N`` alone fixes the draw

``--hypothesis-profile NAME`` on the command line overrides the choice.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests import fake_cupy
from tests.helpers import in_ci

_BASE = settings.get_profile("default")  # Hypothesis's own defaults, whatever it detected about CI
settings.register_profile("ci", _BASE, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", _BASE, derandomize=False)
settings.register_profile("seeds", _BASE, derandomize=False, database=None, print_blob=True)
settings.load_profile("ci" if in_ci() else "dev")

FAKE_SESSION = os.environ.get("MINIDP_FAKE_CUPY", "").strip() == "1"
if FAKE_SESSION:
    if not fake_cupy.is_installed():  # (already there when tests/stand_in_site is on PYTHONPATH)
        fake_cupy.install()  # before any test module imports minidp, and for the whole session
    # subprocesses (the CLI under SIGKILL, benchmark workers) get it through tests/stand_in_site/sitecustomize.py
    _site = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stand_in_site")
    os.environ["PYTHONPATH"] = os.pathsep.join([_site] + [p for p in [os.environ.get("PYTHONPATH")] if p])


def devices_under_test() -> list:
    """The devices named by MINIDP_TEST_DEVICES (default "cpu,cuda")."""
    names = [d.strip().lower() for d in os.environ.get("MINIDP_TEST_DEVICES", "cpu,cuda").split(",") if d.strip()]
    bad = [d for d in names if d not in ("cpu", "cuda")]
    if bad or not names:
        raise pytest.UsageError(f"MINIDP_TEST_DEVICES={os.environ.get('MINIDP_TEST_DEVICES')!r}: use cpu, cuda "
                                f"or cpu,cuda")
    return names




def real_gpu() -> bool:
    """True if a real CuPy (not the stand-in) finds a GPU."""
    if fake_cupy.is_installed():
        return False
    try:
        import cupy  # noqa: PLC0415  (optional)

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture(params=devices_under_test())
def device(request, monkeypatch):
    """ "cpu" or "cuda" (a real GPU, else the CuPy stand-in for this test), with MINIDP_DEVICE set to it."""
    name = request.param
    monkeypatch.setenv("MINIDP_DEVICE", name)
    if name == "cuda" and not fake_cupy.is_installed() and not real_gpu():
        with fake_cupy.installed():
            yield name
    else:
        yield name


@pytest.fixture
def stand_in(monkeypatch):
    """The CuPy stand-in module (installed for this test, or for the session), MINIDP_DEVICE=cuda."""
    monkeypatch.setenv("MINIDP_DEVICE", "cuda")
    if fake_cupy.is_installed():
        yield fake_cupy.cupy
    else:
        with fake_cupy.installed() as module:
            yield module
