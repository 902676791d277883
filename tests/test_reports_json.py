"""Every JSON record and report in reports/ is strict JSON (RFC 8259: no NaN or Infinity), so jq, JavaScript and
every other reader accept it."""
from __future__ import annotations

import json
from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def strict(text: str):
    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_every_json_file_under_reports_is_strict():
    files = sorted(REPORTS.rglob("*.json")) + sorted(REPORTS.rglob("*.jsonl"))
    assert len(files) > 50  # the records are there
    bad = []
    for path in files:
        text = path.read_text()
        try:
            if path.suffix == ".jsonl":
                for line in text.splitlines():
                    if line.strip():
                        strict(line)
            else:
                strict(text)
        except ValueError as err:
            bad.append(f"{path.relative_to(REPORTS)}: {err}")
    assert not bad, bad


def test_the_strict_reader_refuses_nan():
    for text in ('{"order": NaN}', '[Infinity]', '-Infinity'):
        try:
            strict(text)
        except ValueError:
            continue
        raise AssertionError(f"{text} was accepted")
