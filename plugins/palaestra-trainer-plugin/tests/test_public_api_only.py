"""The plugin may use palaestra's public names only: that is what it exists to prove."""
import ast
import pathlib

import palaestra

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "palaestra_trainer_plugin"


def test_plugin_imports_only_public_palaestra_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] == "palaestra":
                if node.module != "palaestra":
                    offenders.append(f"{path.name}: from {node.module} import ...")
                else:
                    offenders += [f"{path.name}: {a.name} is not in palaestra.__all__"
                                  for a in node.names if a.name not in palaestra.__all__]
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names
                              if a.name.startswith("palaestra.")]
    assert not offenders, offenders
