"""The plugin API stays typed: the bundled plugins and the guide's example plugin pass
`mypy --strict` with no cast and no `type: ignore`, the way a plugin author would run it
against an installed palaestra (found through its py.typed marker)."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

from test_plugin_guide import _write_guide_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "palaestra-trainer-plugin" / "palaestra_trainer_plugin"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    # Shared by both checks: torch's stubs are analysed once.
    return tmp_path_factory.mktemp("mypy_cache")


def _mypy_strict(target: pathlib.Path, cache: pathlib.Path) -> None:
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
                          str(target)], capture_output=True, text=True, cwd=target.parent)
    assert run.returncode == 0, f"mypy --strict {target}:\n{run.stdout}{run.stderr}"


def test_packages_ship_py_typed() -> None:
    import palaestra

    assert (pathlib.Path(palaestra.__file__).parent / "py.typed").is_file()
    assert (PLUGIN / "py.typed").is_file()


def test_bundled_plugins_pass_mypy_strict(mypy_cache: pathlib.Path) -> None:
    _mypy_strict(PLUGIN, mypy_cache)


def test_guide_plugin_passes_mypy_strict(tmp_path: pathlib.Path,
                                         mypy_cache: pathlib.Path) -> None:
    _write_guide_files(tmp_path)
    _mypy_strict(tmp_path / "my-vpg" / "my_vpg", mypy_cache)
