"""The house a newcomer walks: the import graph shows the architecture (docs/design.md, "The import
direction"), one definition per option list, no references to documents outside the repository.

Three layers, imports pointing down only:

    minidp/run/   the runner: train loop, CLI, commands, config, run directory, audit, federated simulator
    models/       architectures built from the core, and their Hugging Face I/O
    minidp/*      the core: backend, numerics, errors, threads, nn/, per_example, privacy/, denoise/, optim,
                  step, data/

plus the old public paths of moved runner modules (SHIMS), which only re-export from minidp/run/."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("minidp", "models")
OPTIONAL = ("cupy", "cupyx", "matplotlib")  # the only imports allowed inside functions
RUNNER = "minidp.run"
SHIMS = ("minidp.cli", "minidp.train", "minidp.config", "minidp.plots", "minidp.checkpoint",
         "minidp.commands", "minidp.commands.train", "minidp.commands.demo")  # old paths: re-exports only


def layer(module: str) -> str:
    """'runner', 'models', 'shim' or 'core'."""
    if module == RUNNER or module.startswith(RUNNER + "."):
        return "runner"
    if module == "models" or module.startswith("models."):
        return "models"
    return "shim" if module in SHIMS else "core"


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
            if rel.startswith("minidp/run/commands/") or rel == "minidp/run/cli.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    offenders.append(f"{rel}:{node.lineno}: print()")
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    if any(n.split(".")[0] == "logging" for n in names):
                        offenders.append(f"{rel}:{node.lineno}: imports logging")
    assert not offenders, offenders


def imports_by_layer():
    edges, _ = graph()
    return {name: {layer(m) for m in targets} for name, targets in edges.items()}, edges


def test_the_core_never_imports_models_or_the_runner():
    by_layer, edges = imports_by_layer()
    bad = {name: sorted(m for m in edges[name] if layer(m) != "core")
           for name in edges if layer(name) == "core" and by_layer[name] - {"core"}}
    assert not bad, bad


def test_models_import_only_the_core():
    by_layer, edges = imports_by_layer()
    bad = {name: sorted(m for m in edges[name] if layer(m) not in ("core", "models"))
           for name in edges if layer(name) == "models" and by_layer[name] - {"core", "models"}}
    assert not bad, bad


def test_old_paths_only_re_export_from_the_runner():
    """A shim holds its docstring, imports from minidp/run/, and at most an ``if __name__ == "__main__"``."""
    known = modules()
    assert set(SHIMS) <= set(known), set(SHIMS) - set(known)
    edges, _ = graph()
    for name in SHIMS:
        body = ast.parse(known[name].read_text()).body
        kinds = {type(node).__name__ for node in body[1:]}
        assert kinds <= {"Import", "ImportFrom", "If"}, (name, kinds)
        assert all(layer(m) in ("runner", "shim") for m in edges[name]), (name, edges[name])
    core = [name for name in edges if layer(name) != "shim"]
    assert not [(name, m) for name in core for m in edges[name] if m in SHIMS]  # nothing inside uses them


def test_no_folder_holds_both_sides_of_models():
    """No folder holds both a module that imports models/ and a module that models/ depends on."""
    edges, _ = graph()
    needed, todo = set(), [m for m in edges if layer(m) == "models"]
    while todo:  # everything models/ depends on, directly or not
        for dep in edges[todo.pop()]:
            if layer(dep) != "models" and dep not in needed:
                needed.add(dep)
                todo.append(dep)
    known = modules()
    folder = {name: known[name].parent for name in known}
    users = {folder[name] for name in edges if layer(name) != "models" and any(layer(m) == "models" for m in edges[name])}
    both = sorted(str(folder[name].relative_to(ROOT)) for name in needed if folder[name] in users)
    assert not both, both


def test_models_never_import_the_privacy_machinery():
    """models/ computes the per-example records; clipping them (minidp/privacy/clipping.py, which takes the model)
    and everything after it live in the core's privacy package, never inside an architecture."""
    edges, _ = graph()
    bad = {name: sorted(m for m in edges[name] if m == "minidp.privacy" or m.startswith("minidp.privacy."))
           for name in edges if layer(name) == "models"}
    assert not {name: found for name, found in bad.items() if found}, bad
