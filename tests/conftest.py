"""Make helper modules in tests/ (e.g. ``envs_for_tests``) importable as top-level modules, so
tests can pass ``--env envs_for_tests:factory`` strings to palaestra."""
import os
import sys

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import pytest  # noqa: E402

# Every test runs with the accel mode of this variable: `auto` (the default: the speed paths
# that pay on this machine) or `off` (plain torch everywhere); CI runs the suite both ways.
TEST_ACCEL = os.environ.get("PALAESTRA_TEST_ACCEL", "auto")
if TEST_ACCEL not in ("auto", "off"):
    raise SystemExit(f"PALAESTRA_TEST_ACCEL={TEST_ACCEL!r}: use auto or off")


@pytest.fixture(scope="session", autouse=True)
def _accel_mode(tmp_path_factory):
    """The machine measurements of `accel: auto` go to a folder of this session, not the
    user's cache; with PALAESTRA_TEST_ACCEL=off every run's `auto` plan is plain torch."""
    os.environ.setdefault("PALAESTRA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # ONNX exports cost ~1 s of exporter import per process: only tests/test_export.py asks
    os.environ.setdefault("PALAESTRA_NO_ONNX", "1")
    patch = pytest.MonkeyPatch()
    if TEST_ACCEL == "off":
        from palaestra.accel import Accel

        real = Accel.from_mode

        def from_mode(mode, device="cpu"):
            return Accel.off() if mode == "auto" else real(mode, device)

        patch.setattr(Accel, "from_mode", staticmethod(from_mode))
    yield
    patch.undo()


@pytest.fixture
def accel():
    """The run plan of this test session's mode, for trainers built by hand."""
    from palaestra.accel import Accel

    plan = Accel.from_mode(TEST_ACCEL)
    yield plan
    plan.close()
