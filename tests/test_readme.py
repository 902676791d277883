"""The README's set-up commands stay true: CI runs exactly the README's test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_test_command():
    main_job, test_command = _readme_commands()[:2]
    assert "minidp demo" in main_job
    assert test_command.endswith("pytest")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_package_imports_no_autograd_framework():
    banned = ("torch", "jax", "tensorflow", "autograd", "opacus")
    for folder in ("minidp", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            for line in path.read_text().splitlines():
                words = line.strip().replace(",", " ").split()
                if len(words) >= 2 and words[0] in ("import", "from"):
                    module = words[1].split(".")[0]
                    assert module not in banned, f"{path}: {line.strip()}"
