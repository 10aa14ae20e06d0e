"""palaestra's own trainers are written as a plugin would be: public names only, and plain
algorithm code (no threads, no private torch APIs: those live in palaestra.accel)."""
import ast
import pathlib

import pytest

import palaestra

SRC = pathlib.Path(palaestra.__file__).resolve().parent
TRAINERS = SRC / "trainers"
PLUGIN = SRC.parents[1] / "plugins" / "palaestra-trainer-plugin" / "palaestra_trainer_plugin"
FORBIDDEN_MODULES = {"threading", "concurrent", "ctypes", "multiprocessing", "_thread"}


def _files():
    roots = [TRAINERS] + ([PLUGIN] if PLUGIN.is_dir() else [])
    return sorted(p for root in roots for p in root.rglob("*.py"))


def _own_package(path: pathlib.Path):
    """palaestra.trainers.<name> may import its own modules (and the package index all)."""
    if TRAINERS not in path.parents:
        return None
    parts = path.relative_to(TRAINERS).parts
    return f"palaestra.trainers.{parts[0]}" if len(parts) > 1 else "palaestra.trainers"


def _problems(source: str, own=None):
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                yield f"from {node.module} import ..."
            elif top == "palaestra" and node.module != "palaestra" and \
                    not (own and (node.module == own or node.module.startswith(own + "."))):
                yield f"from {node.module} import ... (not a public name)"
            elif node.module == "palaestra":
                yield from (f"{a.name} is not in palaestra.__all__" for a in node.names
                            if a.name not in palaestra.__all__)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN_MODULES or alias.name.startswith("palaestra."):
                    yield f"import {alias.name}"
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") and not node.attr.startswith("__") and \
                    isinstance(node.value, ast.Name) and node.value.id in ("torch", "F", "nn"):
                yield f"{node.value.id}.{node.attr} (a private torch name)"
            if node.attr in ("ops", "_C") and isinstance(node.value, ast.Name) and \
                    node.value.id == "torch":
                yield f"torch.{node.attr} (torch's operator registry: private kernels)"
        elif isinstance(node, ast.Name) and node.id in ("Event", "Thread", "ThreadPoolExecutor"):
            yield f"{node.id} (threads belong in palaestra.accel)"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(p.parents[2])))
def test_trainer_code_is_plain_and_public(path):
    assert list(_problems(path.read_text(), _own_package(path))) == []


def test_the_guard_catches_what_it_forbids():
    found = list(_problems("import threading\nfrom threading import Event\nimport torch\n"
                   "from palaestra.optimizer import ExtrinsicRewardSignal\n"
                   "from palaestra import NotAName\n"
                           "x = torch._foreach_lerp_\ny = torch.ops.mkldnn\ne = Event()\n",
                           "palaestra.trainers.sac"))
    assert len(found) == 7, found
