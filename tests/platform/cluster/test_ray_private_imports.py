"""Ray-private APIs are used in one module only: seglab/platform/cluster/ray_internals.py.

A Ray-private API is a Ray module path with a component starting with ``_`` (``ray._private``,
``ray._common``, ``ray.train._internal``, ``ray.train.v2._internal``) or an underscore name taken
from a Ray module (``ray.train.torch.config._TorchBackend``), reached by ``import``, ``from ...
import``, ``importlib.import_module("...")`` or an attribute chain on an imported Ray name
(``ray._private.worker.global_worker``). Dunder names (``ray.__version__``) are public.
"""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import seglab

SEGLAB = Path(seglab.__file__).resolve().parent
ALLOWED = SEGLAB / "platform" / "cluster" / "ray_internals.py"


def _is_ray(path: str) -> bool:
    return path == "ray" or path.startswith("ray.")


def _private(path: str) -> bool:
    return _is_ray(path) and any(p.startswith("_") and not (p.startswith("__") and p.endswith("__"))
                                 for p in path.split("."))


def _chain(node: ast.Attribute) -> Optional[Tuple[str, List[str]]]:
    """``a.b.c`` -> ("a", ["b", "c"]); None when the chain does not start at a plain name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, attrs[::-1]) if isinstance(node, ast.Name) else None


def _bindings(tree: ast.AST) -> Dict[str, str]:
    """Local name -> the Ray path it stands for, from the module's imports (any scope)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_ray(a.name):
                    bound[a.asname or "ray"] = a.name if a.asname else "ray"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_ray(node.module or ""):
            for a in node.names:
                bound[a.asname or a.name] = f"{node.module}.{a.name}"
    return bound


def ray_private_uses(source: str) -> List[Tuple[int, str]]:
    """(line, Ray-private path) for every use of a Ray-private API in ``source``."""
    tree = ast.parse(source)
    bound = _bindings(tree)
    found = set()
    for node in ast.walk(tree):
        paths = []
        if isinstance(node, ast.Import):
            paths = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            paths = [module] if _private(module) else [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                paths = [node.args[0].value]
        elif isinstance(node, ast.Attribute) and _private(f"ray.{node.attr}"):
            chain = _chain(node)  # reported where the private part is named, not at each use after
            if chain and chain[0] in bound:
                paths = [".".join([bound[chain[0]], *chain[1]])]
        found.update((node.lineno, p) for p in paths if _private(p))
    return sorted(found)


def _modules() -> List[Path]:
    return sorted(SEGLAB.rglob("*.py"))


def test_only_ray_internals_uses_ray_private_apis():
    offenders = []
    for path in _modules():
        if path == ALLOWED:
            continue
        for line, what in ray_private_uses(path.read_text()):
            offenders.append(f"{path.relative_to(SEGLAB.parent)}:{line}: {what}")
    assert not offenders, "Ray-private APIs belong in seglab/platform/cluster/ray_internals.py (wrap them " \
                          "there in a public function):\n  " + "\n  ".join(offenders)


def test_the_walk_sees_the_package_and_ray_internals_holds_what_it_wraps():
    names = {p.relative_to(SEGLAB).as_posix() for p in _modules()}
    assert {"platform/cluster/local.py", "platform/cluster/ddp.py", "platform/quiet.py"} <= names
    uses = {what for _, what in ray_private_uses(ALLOWED.read_text())}
    assert uses == {"ray._private", "ray._private.utils", "ray._private.worker", "ray.train.torch.config._TorchBackend",
                    "ray.train._internal.worker_group", "ray.train.torch.config._set_torch_distributed_env_vars",
                    "ray.train.v2._internal.execution.context",
                    "ray.train.v2._internal.callbacks"}, uses


@pytest.mark.parametrize("source,expected", [
    ("import ray._private.worker", "ray._private.worker"),
    ("from ray._private import ray_constants", "ray._private"),
    ("from ray._common.utils import get_user_temp_dir", "ray._common.utils"),
    ("from ray.train._internal.worker_group import WorkerGroup", "ray.train._internal.worker_group"),
    ("import ray.train.v2._internal.execution.context as c", "ray.train.v2._internal.execution.context"),
    ("from ray.train.torch.config import _TorchBackend", "ray.train.torch.config._TorchBackend"),
    ("from ray import _private", "ray._private"),
    ("def f():\n    import ray\n    return ray._private.worker.global_worker", "ray._private"),
    ("import ray.train as rt\nrt._internal", "ray.train._internal"),
    ("from ray.train import torch as t\nt.config._set_torch_distributed_env_vars()",
     "ray.train.torch.config._set_torch_distributed_env_vars"),
    ("import importlib\nimportlib.import_module('ray._private.utils')", "ray._private.utils"),
])
def test_each_way_of_reaching_a_ray_private_api_is_found(source, expected):
    assert expected in {what for _, what in ray_private_uses(source)}


@pytest.mark.parametrize("source", [
    "import ray\nray.init(address='local')\nprint(ray.__version__)",
    "from ray.train.torch import TorchConfig, TorchTrainer",
    "from ray.util.placement_group import placement_group_table",
    "import ray.train\nray.train.get_context().get_world_rank()",
    "import torch._dynamo",                       # not Ray
    "from hydra._internal.utils import get_args_parser",
    "import rayon._x",                            # a name that merely starts with "ray"
    "from . import _helper\nfrom .ray import _x",  # relative imports are seglab's own
    "x = object()\nx._private",                   # not bound to a Ray import
])
def test_public_ray_and_other_packages_pass(source):
    assert ray_private_uses(source) == []
