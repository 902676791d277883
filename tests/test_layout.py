"""The house a newcomer walks (issue 16): the import graph shows the architecture, one definition per option
list, no references to documents outside the repository."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("minidp", "models")
OPTIONAL = ("cupy", "cupyx", "matplotlib")  # the only imports allowed inside functions


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(node, current: str, known: dict) -> list[str]:
    """Package modules named by one import statement (a `from a import b` may name the submodule a.b)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            base = ".".join(current.split(".")[: -node.level] + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    out = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def graph():
    known = modules()
    edges, lazy = {}, []
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        edges[name] = set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[name].update(m for m in imported(node, name, known) if m != name)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        top = (inner.names[0].name if isinstance(inner, ast.Import) else inner.module or "")
                        if top.split(".")[0] not in OPTIONAL:
                            lazy.append(f"{path.relative_to(ROOT)}:{inner.lineno} imports {top} inside a function")
    return edges, lazy


def find_cycle(edges):
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            # a package's __init__ importing its own submodules is how packages work, not a cycle
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == "open":
                return stack + [node, nxt]
            if nxt not in state:
                found = visit(nxt, stack + [node])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_no_import_cycles_and_no_lazy_imports():
    edges, lazy = graph()
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)
    assert not lazy, "\n".join(lazy)


def test_option_lists_are_defined_once():
    names = ("TASKS", "OPTIMIZERS", "CLIP_METHODS", "NORM_CORRECTIONS", "FALLBACKS", "METHODS",
             "DENOISE_METHODS", "DENOISERS", "TRAINABLE_CHOICES", "DEVICES", "DTYPES")
    where = {}
    for module, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List, ast.Set)):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in names:
                        where.setdefault(tuple(ast.literal_eval(node.value)), []).append(f"{module}.{target.id}")
    repeated = {values: places for values, places in where.items() if len(places) > 1}
    assert not repeated, repeated


def test_nothing_cites_documents_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}" for package in PACKAGES for p in (ROOT / package).rglob("*.py")
            if "DESIGN.md" in p.read_text()]
    assert not hits, hits


def test_one_output_channel():
    """Library code neither prints nor logs (docs/design.md, "One output channel"): only the commands and the
    CLI entry point print; everything else reports through the ``log`` callable it is given."""
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("minidp/commands/") or rel == "minidp/cli.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    offenders.append(f"{rel}:{node.lineno}: print()")
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    if any(n.split(".")[0] == "logging" for n in names):
                        offenders.append(f"{rel}:{node.lineno}: imports logging")
    assert not offenders, offenders
