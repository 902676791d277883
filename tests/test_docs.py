"""The documentation is executed and checked against the code, so it cannot drift from it.

- docs/walkthrough.md: its ```python blocks run in order in one namespace; a ```text block right after a
  python block must equal what that block printed; the identities it prints are asserted again here.
- README.md: its ```python snippet (an excerpt of the walkthrough) runs as written.
- docs/layers.md: each ```python excerpt headed ``# path`` appears line for line in that file.
- docs/design.md: every "docs/design.md §n" cited in the code has a section n; every file named in the docs
  exists; every symbol in the design's "where each concept lives" table is defined in the file it names.

After an intended change of a printed value, rewrite the walkthrough's text blocks with
``MINIDP_UPDATE_DOCS=1 python -m pytest tests/test_docs.py`` and review the diff.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def fenced_blocks(text: str) -> list[re.Match]:
    """Every fenced block of a Markdown text: group 1 the language, group 2 the body."""
    return list(FENCE.finditer(text))


def run_python_blocks(text: str, source: str):
    """Execute the python blocks of ``text`` in order in one namespace.

    Returns (namespace, [(python match, captured stdout, the text-block match right after it or None)]).
    """
    namespace: dict = {"__name__": "__docs__"}
    blocks = fenced_blocks(text)
    runs = []
    for k, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block.group(2), f"{source} (python block {k + 1})", "exec"), namespace)  # noqa: S102
        following = blocks[k + 1] if k + 1 < len(blocks) else None
        is_output = (following is not None and following.group(1) == "text"
                     and not text[block.end():following.start()].strip())
        runs.append((block, out.getvalue(), following if is_output else None))
    return namespace, runs


@pytest.fixture(scope="module")
def walkthrough():
    path = DOCS / "walkthrough.md"
    text = path.read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIDP_DEVICE", "cpu")  # a NumPy walk: its printed noise is NumPy's (also under gpu_check.sh)
        namespace, runs = run_python_blocks(text, "docs/walkthrough.md")
    if os.environ.get("MINIDP_UPDATE_DOCS") == "1":
        for _, output, shown in sorted(runs, key=lambda r: -r[0].start()):  # from the end: offsets stay valid
            if shown is not None:
                text = text[:shown.start(2)] + output + text[shown.end(2):]
        path.write_text(text)
    return namespace, runs


def test_walkthrough_prints_what_it_shows(walkthrough):
    _, runs = walkthrough
    if os.environ.get("MINIDP_UPDATE_DOCS") == "1":
        pytest.skip("MINIDP_UPDATE_DOCS=1: docs/walkthrough.md's text blocks were rewritten; review the diff")
    shown = [r for r in runs if r[2] is not None]
    assert len(shown) >= 8, "the walkthrough shows the output of each stage"
    for block, output, text_block in shown:
        line = block.string.count("\n", 0, block.start()) + 1
        assert output == text_block.group(2), (
            f"docs/walkthrough.md line {line}: the block printed\n{output}\nbut the text beside it says\n"
            f"{text_block.group(2)}\n(after an intended change: MINIDP_UPDATE_DOCS=1 pytest tests/test_docs.py)")


def test_walkthrough_identities_hold(walkthrough):
    ns, _ = walkthrough
    record, step, model = ns["record"], ns["step"], ns["model"]
    qN, max_grad_norm = step.expected_batch_size, step.max_grad_norm
    assert qN == step.sample_rate * len(step.data)
    n = record.sampled_indices.size
    assert record.per_example_norms.shape == record.clip_factors.shape == record.losses.shape == (n,)
    # clipping: c_i = min(1, C / (‖∇_i‖ + 1e-6)), so every clipped gradient has norm ≤ C
    assert np.all(record.clip_factors * record.per_example_norms <= max_grad_norm)
    assert np.max(np.abs(record.clip_factors - np.minimum(1.0, max_grad_norm / (record.per_example_norms + 1e-6)))) \
        <= 1e-15
    for name in model.trainable:
        released = (record.clipped_sum[name] + record.noise[name]) / qN  # float64
        assert np.max(np.abs(record.released[name] - released)) <= 1e-12, name
        assert record.clipped_sum[name].dtype == np.float64
    # post-processing: matrices the denoiser did not select pass through as the very same arrays
    for name in model.trainable:
        if name not in record.denoise_stats:
            assert record.denoised[name] is record.released[name], name
    # the accountant: ε depends on (σ, q, steps, δ) only and grows with every step
    assert 0 < record.epsilon < ns["second"].epsilon


def test_readme_python_snippet_runs():
    text = (ROOT / "README.md").read_text()
    namespace, runs = run_python_blocks(text, "README.md")
    assert len(runs) == 1, "the README has one python snippet (an excerpt of docs/walkthrough.md)"
    record = namespace["record"]
    assert record.step == 1 and record.sampled_indices.size == record.clip_factors.size
    assert "docs/walkthrough.md" in text and "docs/design.md" in text


def test_layers_excerpts_are_the_code():
    text = (DOCS / "layers.md").read_text()
    excerpts = 0
    for block in fenced_blocks(text):
        lines = block.group(2).splitlines()
        if block.group(1) != "python" or not lines or not lines[0].startswith("# "):
            continue
        source = ROOT / lines[0][2:].split()[0]
        assert source.is_file(), f"docs/layers.md cites {source}, which does not exist"
        code = [line.strip() for line in source.read_text().splitlines()]
        for line in lines[1:]:
            if line.strip() and line.strip() != "...":
                assert line.strip() in code, f"docs/layers.md: {line.strip()!r} is not a line of {source}"
        excerpts += 1
    assert excerpts >= 7, "linear, embedding, layernorm, softmax, gelu, attention, cross-entropy"


def _cited_sections(folders=("minidp", "models", "scripts", "tests")):
    cited = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for number in re.findall(r"docs/design\.md §(\d+)", path.read_text()):
                cited.setdefault(int(number), []).append(str(path.relative_to(ROOT)))
    return cited


def test_every_cited_design_section_exists():
    headings = {int(n) for n in re.findall(r"^## §?(\d+)\.", (DOCS / "design.md").read_text(), re.M)}
    cited = _cited_sections()
    assert cited, "the code cites docs/design.md"
    for number, where in cited.items():
        assert number in headings, f"{where} cite docs/design.md §{number}, which has no such section"


def test_docs_name_only_files_that_exist():
    pattern = re.compile(r"\b((?:minidp|models|scripts|tests|docs)/[\w/]*\w\.(?:py|md|sh))\b")
    texts = {path: path.read_text() for path in DOCS.glob("*.md")}
    texts[ROOT / "README.md"] = (ROOT / "README.md").read_text()
    for folder in ("minidp", "models", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            texts[path] = path.read_text()
    for path, text in texts.items():
        for name in set(pattern.findall(text)):
            assert (ROOT / name).exists(), f"{path.relative_to(ROOT)} names {name}, which does not exist"


def test_design_concept_table_names_real_symbols():
    text = (DOCS / "design.md").read_text()
    table = text.split("### 1.3 Where each concept lives", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) >= 20
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        files = re.findall(r"`([\w/]+\.py)`", cells[1])
        symbols = re.findall(r"`(\w+)`", cells[2]) if len(cells) > 2 else []
        assert files, row
        sources = "\n".join((ROOT / f).read_text() for f in files)
        for symbol in symbols:
            defined = re.search(rf"^\s*(?:def|class)\s+{symbol}\b|^{symbol}\s*[:=]", sources, re.M)
            assert defined, f"docs/design.md: {symbol} is not defined in {', '.join(files)}"
