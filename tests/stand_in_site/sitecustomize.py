"""Start-up hook: installs the CuPy stand-in (tests/fake_cupy.py) in every Python process started with
MINIDP_FAKE_CUPY=1 and this folder on PYTHONPATH — the subprocesses of a stand-in test session (the CLI
killed by SIGKILL in tests/run/test_resume.py, benchmark workers) and scripts/gpu_check.sh on a CPU."""
import os
import sys

if os.environ.get("MINIDP_FAKE_CUPY", "").strip() == "1":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests import fake_cupy

    fake_cupy.install()
