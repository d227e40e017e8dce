"""The room's shape: light to import, no circle, small modules and functions."""
import ast
import subprocess
import sys
from pathlib import Path

import seglab.platform.cluster as cluster

ROOM = Path(cluster.__file__).parent
MODULES = ["seglab.platform.cluster." + p.stem for p in sorted(ROOM.glob("*.py")) if p.stem != "__init__"]


def test_importing_the_room_imports_no_ray_torch_or_psutil():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + "print(sorted(m for m in ('ray', 'torch', 'psutil', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_modules_and_functions_stay_small():
    for path in ROOM.glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) < 450, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < 80, f"{path.name}: {node.name}"


def test_the_room_map_names_every_module():
    for module in MODULES:
        assert f"``{module.rsplit('.', 1)[1]}``" in cluster.__doc__, module


def test_the_room_needs_nothing_else_of_the_platform():
    """So no import circle can pass through it (config: a type annotation only)."""
    allowed = ("seglab.errors", "seglab.platform.cluster", "seglab.platform.config")
    for path in ROOM.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                if name == "seglab" or name.startswith("seglab."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
    assert "if TYPE_CHECKING:\n    from seglab.platform.config import RunConfig" in (ROOM / "resources.py").read_text()
