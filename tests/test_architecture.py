"""The house rules of ../shared/DESIGN.md, checked on the code itself (read with ``ast``, nothing imported):

* no import circle anywhere in ``seglab/`` (imports inside functions count too);
* the core (models, losses, datasets, metrics) never imports ray, mlflow, hydra or omegaconf;
* no module over 450 lines and no function over 80 lines;
* no private (underscore) name imported from another seglab module;
* generic platform code never names a method (methods are plug-ins, ``seglab/platform/methods/``);
* every package's ``__init__`` has a docstring (a room's docstring is its map).
"""
import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "seglab"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
METHOD_NAMES = re.compile(r"ovenet|semeda|phgmm", re.IGNORECASE)


def modules():
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


MODULES = modules()
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def imported(name, tree):
    """(module, names) of every import in ``tree``, relative imports resolved; at any depth."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield base, [a.name for a in node.names]


def resolve(target):
    """The seglab module ``target`` (a dotted path, maybe ``module.attribute``) lives in, or None."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def import_graph():
    edges = defaultdict(set)
    for name, tree in TREES.items():
        for module, names in imported(name, tree):
            for target in [module] + [f"{module}.{n}" for n in names]:
                found = resolve(target)
                # a submodule taking a name from its own package's __init__ (the registry idiom) is no edge
                if found and found != name and not name.startswith(found + "."):
                    edges[name].add(found)
    return edges


def strongly_connected(edges):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    edges = import_graph()
    circles = strongly_connected(edges)
    described = ["; ".join(f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c) for c in circles]
    assert circles == [], described


def test_the_core_never_imports_the_platform_layers_dependencies():
    bad = []
    for name, tree in TREES.items():
        if name.split(".")[1:2] not in (["models"], ["losses"], ["datasets"], ["metrics"]):
            continue
        for module, _ in imported(name, tree):
            if module.split(".")[0] in ("ray", "mlflow", "hydra", "omegaconf") or module.startswith("seglab.platform"):
                bad.append(f"{name} imports {module}")
    assert bad == []


def test_modules_and_functions_stay_small():
    long_modules = [f"{MODULES[n].relative_to(REPO)} ({len(MODULES[n].read_text().splitlines())} lines)"
                    for n in MODULES if len(MODULES[n].read_text().splitlines()) > MAX_MODULE_LINES]
    long_functions = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{MODULES[name].relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert long_modules == [] and long_functions == [], (long_modules, long_functions)


def test_private_names_stay_in_their_module():
    bad = []
    for name, tree in TREES.items():
        for module, names in imported(name, tree):
            if not module.startswith("seglab"):
                continue
            parts = module.split(".")
            private = [n for n in names if n.startswith("_") and n != "__version__"] + \
                      [p for p in parts if p.startswith("_") and p != "__init__"]
            if private and resolve(module) != name:
                bad.append(f"{name}: from {module} import {', '.join(names)}")
    assert bad == []


def _docstring_nodes(tree):
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def method_names_in_code(tree):
    """Identifiers and string literals (not docstrings, not comments) that name a method."""
    docs = _docstring_nodes(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            text = node.name
        else:
            continue
        if METHOD_NAMES.search(text):
            hits.append((getattr(node, "lineno", 0), text))
    return hits


def test_the_method_name_check_sees_code_and_skips_docstrings():
    tree = ast.parse('"""OVeNet is fine here."""\nx = run.model.name.startswith("ovenet")\n')
    assert method_names_in_code(tree) == [(2, "ovenet")]


def test_generic_platform_code_never_names_a_method():
    bad = {}
    for name, tree in TREES.items():
        if not name.startswith("seglab.platform") or name.startswith("seglab.platform.methods"):
            continue
        hits = method_names_in_code(tree)
        if hits:
            bad[name] = hits
    assert bad == {}


@pytest.mark.parametrize("package", sorted(n for n, p in MODULES.items() if p.name == "__init__.py"))
def test_every_package_says_what_it_holds(package):
    assert ast.get_docstring(TREES[package]), f"{package}: add a docstring that maps the package"
