"""Make helper modules in tests/ (e.g. ``envs_for_tests``) importable as top-level modules, so
tests can pass ``--env envs_for_tests:factory`` strings to palaestra."""
import os
import sys

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
