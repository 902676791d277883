"""scripts/property_seeds.py: one pytest per seed under the random "seeds" profile (never run in the suite)."""
from __future__ import annotations

from scripts import property_seeds


def test_each_seed_is_its_own_random_pytest_run(capsys):
    assert property_seeds.main(["--dry-run", "--start", "7", "--count", "3", "tests/nn"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for seed, line in zip((7, 8, 9), lines):
        # a seed only matters with derandomisation off: the "seeds" profile (tests/conftest.py) has it off
        assert "--hypothesis-profile=seeds" in line and line.endswith(f"--hypothesis-seed={seed} tests/nn")


def test_seeds_profile_is_random_and_ci_is_not():
    from hypothesis import settings

    import tests.conftest  # noqa: F401  (registers the profiles)

    assert settings.get_profile("seeds").derandomize is False and settings.get_profile("seeds").database is None
    assert settings.get_profile("dev").derandomize is False
    assert settings.get_profile("ci").derandomize is True
