"""Broken trainer plugins and broken stats writers, through the real `palaestra` command.

A plugin is someone else's code that palaestra runs on every command, so none of its faults may
take palaestra down: `palaestra trainers` still lists what works and names what does not, `learn`
with a built-in trainer still trains, and a stats writer that fails costs only its own output.
Only asking for a broken plugin's own trainer type refuses the run (with the bad-input harness).

Each fake plugin is a module plus a ``*.dist-info`` folder (METADATA + entry_points.txt) in a
folder put on sys.path for one test: `importlib.metadata` finds distributions there. The folder
lies outside the scratch project, and no bytecode is written, so the harness's check that nothing
outside the run folder changed still holds.
"""
from __future__ import annotations

import importlib
import itertools
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from badinput import project_with, refused, run
from helpers import scalars
from palaestra.cli import main
from palaestra.registry import STATS_WRITER_GROUP, TRAINER_TYPE_GROUP

PREFIX = "palaestra_bad_plugin_"
_ids = itertools.count()

CONFIG = """\
behaviors:
  CartPole-v1:
    trainer_type: {trainer_type}
    hyperparameters:
      batch_size: 64
      buffer_size: 128
    network_settings:
      hidden_units: 16
      num_layers: 1
    summary_freq: 100
    time_horizon: 32
torch_settings:
  num_threads: 1
"""


class Site:
    """A folder on sys.path to install throw-away plugin distributions into."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def install(self, dist: str, source: str, trainer_types: Optional[Dict[str, str]] = None,
                stats_writers: Optional[Dict[str, str]] = None) -> str:
        """`source` as a module of distribution `dist`, with entry points {name: attribute};
        returns the module's name (unique, so that no test sees another's module)."""
        module = f"{PREFIX}{next(_ids)}_{os.getpid()}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n",
                                       encoding="utf-8")
        groups = []
        for group, eps in ((TRAINER_TYPE_GROUP, trainer_types), (STATS_WRITER_GROUP,
                                                                 stats_writers)):
            if eps:
                groups.append(f"[{group}]\n" + "".join(f"{name} = {module}:{attr}\n"
                                                       for name, attr in eps.items()))
        (info / "entry_points.txt").write_text("\n".join(groups), encoding="utf-8")
        importlib.invalidate_caches()
        return module


@pytest.fixture
def site(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("site")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield Site(root)
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if name.startswith(PREFIX):
                del sys.modules[name]
        importlib.invalidate_caches()


def trainers(capsys) -> str:
    """`palaestra trainers`: it must exit 0 whatever the plugins do; returns its output."""
    capsys.readouterr()
    rc = main(["trainers"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "Traceback" not in out + err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["type", "package", "version", "module"], out
    assert ["ppo", "palaestra"] in [row[:2] for row in rows], out  # the built-in stays
    return out


def broken_line(out: str, entry_point: str, dist: str) -> str:
    lines = [line for line in out.splitlines()
             if line.startswith(f"broken plugin: entry point '{entry_point}' of {dist}: ")]
    assert len(lines) == 1, out
    return lines[0]


def learn_argv() -> List[str]:
    return ["learn", "config.yaml", "--env", "CartPole-v1", "--results-dir", "results",
            "--run-id", "r", "--max-steps", "500", "--seed", "1"]


def project(tmp_path, trainer_type: str = "ppo") -> str:
    return project_with(tmp_path, {"config.yaml": CONFIG.format(trainer_type=trainer_type)})


def trains(tmp_path, capsys, caplog) -> tuple:
    """A short CartPole run with the built-in ppo, which must succeed whatever the plugins do.
    Returns the outcome, everything it reported (output and log) and the behavior folder."""
    caplog.set_level(logging.INFO)
    outcome = run(project(tmp_path), learn_argv(), capsys, allowed=["project/results"])
    text = outcome.out + outcome.err + "\n" + caplog.text
    assert outcome.rc == 0, text
    assert "Traceback" not in text
    assert not outcome.changed, outcome.changed
    behavior = Path(tmp_path) / "project" / "results" / "r" / "CartPole-v1"
    assert (behavior / "checkpoint.pt").is_file()
    return outcome, text, behavior


def warnings_about(caplog, *needles: str) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
            and all(n in r.getMessage() for n in needles)]


# --------------------------------------------------------------- trainer-type plugins

GOOD_CLASSES = """
from palaestra.trainers.ppo import PPOSettings, PPOTrainer


class MyTrainer(PPOTrainer):
    pass


class MySettings(PPOSettings):
    pass
"""

BROKEN_TRAINER_PLUGINS = {
    "import_error": ("raise ImportError('needs the package frobnicate')\n"
                     "def register():\n    pass\n", "ImportError: needs the package frobnicate"),
    "syntax_error": ("def register(:\n    return {}, {}\n", "SyntaxError"),
    "sys_exit_on_import": ("import sys\nsys.exit(3)\n",
                           "SystemExit: the plugin called sys.exit(3)"),
    "sys_exit_when_called": ("import sys\ndef register():\n    sys.exit('bye')\n",
                             "SystemExit: the plugin called sys.exit('bye')"),
    "registration_raises": ("def register():\n    raise RuntimeError('licence server down')\n",
                            "RuntimeError: licence server down"),
    "returns_none": ("def register():\n    return None\n", "TypeError: a trainer_type entry "
                                                         "point must return"),
    "returns_tuple_of_3": ("def register():\n    return {}, {}, {}\n",
                           "TypeError: a trainer_type entry point must return"),
    "returns_non_dicts": (GOOD_CLASSES + "def register():\n"
                          "    return [MyTrainer], [MySettings]\n",
                          "TypeError: a trainer_type entry point must return"),
    "non_class_trainer": (GOOD_CLASSES + "def register():\n"
                          "    return {'mytype': len}, {'mytype': MySettings}\n",
                          "TypeError: trainer type 'mytype': <built-in function len> is not "
                          "a class"),
    "trainer_not_rltrainer": (GOOD_CLASSES + "class NotATrainer:\n    pass\n"
                              "def register():\n"
                              "    return {'mytype': NotATrainer}, {'mytype': MySettings}\n",
                              "NotATrainer is not a class deriving palaestra's RLTrainer"),
    "settings_not_hyperparams": (GOOD_CLASSES + "def register():\n"
                                 "    return {'mytype': MyTrainer}, {'mytype': dict}\n",
                                 "settings class builtins.dict is not a class deriving "
                                 "palaestra's HyperparamSettings"),
    "settings_missing": (GOOD_CLASSES + "def register():\n"
                         "    return {'mytype': MyTrainer, 'other': MyTrainer}, "
                         "{'mytype': MySettings}\n",
                         "no settings class for trainer type(s) ['other']"),
    "name_not_a_string": (GOOD_CLASSES + "def register():\n"
                          "    return {7: MyTrainer}, {7: MySettings}\n",
                          "trainer type name 7 is not a non-empty string"),
    "entry_point_not_callable": ("register = 42\n", "TypeError: 'int' object is not callable"),
    "entry_point_attribute_missing": ("def something_else():\n    pass\n", "AttributeError"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TRAINER_PLUGINS))
def test_trainers_lists_a_broken_trainer_plugin_and_the_rest(site, capsys, caplog, case):
    source, error = BROKEN_TRAINER_PLUGINS[case]
    site.install("broken-plugin", source, trainer_types={"mytype": "register"})
    site.install("good-plugin", GOOD_CLASSES + "def register():\n"
                 "    return {'goodtype': MyTrainer}, {'goodtype': MySettings}\n",
                 trainer_types={"goodtype": "register"})
    caplog.set_level(logging.WARNING)
    out = trainers(capsys)
    assert error in broken_line(out, "mytype", "broken-plugin"), out
    # the working plugin is listed; the broken one registered nothing
    assert ["goodtype", "good-plugin", "0.1"] in [line.split()[:3] for line in out.splitlines()]
    assert "mytype" not in [line.split()[0] for line in out.splitlines() if line.strip()]
    assert warnings_about(caplog, "'mytype'", "broken-plugin")


def test_an_entry_point_naming_a_missing_module_is_reported(site, capsys):
    info = site.root / "ghost-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{TRAINER_TYPE_GROUP}]\nghost = {PREFIX}not_installed:register\n")
    importlib.invalidate_caches()
    assert "ModuleNotFoundError" in broken_line(trainers(capsys), "ghost", "ghost")


def test_junk_replacing_ppo_leaves_the_builtin_ppo_training(site, tmp_path, capsys, caplog):
    # the plugin's entry point sorts before `default`, yet the built-ins load first, and the
    # junk is refused as a whole instead of replacing them
    site.install("junk-ppo", "def register():\n    return {'ppo': 'a string'}, {'ppo': int}\n",
                 trainer_types={"aaa_junk": "register"})
    line = broken_line(trainers(capsys), "aaa_junk", "junk-ppo")
    assert "trainer type 'ppo': 'a string' is not a class deriving palaestra's RLTrainer" in line
    assert "settings class builtins.int is not a class" in line
    caplog.clear()
    _, text, behavior = trains(tmp_path, capsys, caplog)
    assert warnings_about(caplog, "'aaa_junk'", "junk-ppo", "RLTrainer")
    assert "replaces" not in text


def test_a_plugin_exiting_on_import_does_not_end_learn(site, tmp_path, capsys, caplog):
    site.install("exit-plugin", "import sys\nsys.exit(3)\n", trainer_types={"exits": "x"},
                 stats_writers={"exits": "x"})
    _, text, _ = trains(tmp_path, capsys, caplog)
    assert warnings_about(caplog, "trainer plugin 'exits'", "exit-plugin", "sys.exit(3)")
    assert warnings_about(caplog, "stats writer plugin 'exits'", "exit-plugin", "sys.exit(3)")


@pytest.mark.parametrize("case", ["import_error", "sys_exit_on_import", "registration_raises"])
def test_learn_with_a_broken_plugins_type_is_refused_naming_it(site, tmp_path, capsys, case):
    source, _ = BROKEN_TRAINER_PLUGINS[case]
    site.install("broken-plugin", source, trainer_types={"mytype": "register"})
    refused(project(tmp_path, "mytype"), learn_argv(), capsys, "Invalid trainer type mytype",
            "Plugins that failed to load: mytype", "config.yaml")
    assert not (Path(tmp_path) / "project" / "results").exists()


def test_learn_with_a_type_whose_settings_are_junk_is_refused(site, tmp_path, capsys):
    source, _ = BROKEN_TRAINER_PLUGINS["settings_not_hyperparams"]
    site.install("broken-plugin", source, trainer_types={"mytype": "register"})
    refused(project(tmp_path, "mytype"), learn_argv(), capsys, "Invalid trainer type mytype",
            "failed to load: mytype")


# ------------------------------------------------------------------- stats writers

WRITERS = """
from palaestra.stats import StatsWriter

CALLS = []


class Recorder(StatsWriter):
    '''A working writer beside the broken one: it must keep getting every summary.'''

    def on_start(self, category, max_steps, initial_step):
        CALLS.append(("Recorder", "on_start"))

    def write_stats(self, category, values, step):
        CALLS.append(("Recorder", "write_stats"))

    def close(self):
        CALLS.append(("Recorder", "close"))


class Broken(StatsWriter):
    FAILS_IN = None

    def on_start(self, category, max_steps, initial_step):
        self._call("on_start")

    def write_stats(self, category, values, step):
        self._call("write_stats")

    def close(self):
        self._call("close")

    def _call(self, method):
        CALLS.append(("Broken", method))
        if method == self.FAILS_IN:
            self.fail()

    def fail(self):
        raise RuntimeError("dashboard unreachable")


class BrokenOnStart(Broken):
    FAILS_IN = "on_start"


class BrokenWrite(Broken):
    FAILS_IN = "write_stats"


class BrokenClose(Broken):
    FAILS_IN = "close"


class ExitingWrite(BrokenWrite):
    def fail(self):
        import sys
        sys.exit(5)


def recorder_with(cls):
    return lambda options: [cls(), Recorder()]


on_start_fails = recorder_with(BrokenOnStart)
write_fails = recorder_with(BrokenWrite)
close_fails = recorder_with(BrokenClose)
write_exits = recorder_with(ExitingWrite)


def factory_raises(options):
    raise OSError("cannot reach the metrics server")


def factory_returns_none(options):
    return None


def factory_returns_a_writer(options):
    return Recorder()


def factory_returns_junk(options):
    return [Recorder(), "not a writer", object]


def factory_exits(options):
    import sys
    sys.exit(9)


not_callable = "a string"
"""


def calls(module: str) -> List[tuple]:
    return list(sys.modules[module].CALLS)


def tensorboard_still_written(behavior: Path) -> None:
    """palaestra's own writers kept writing: summaries at several steps up to the end."""
    steps = [s for s, _ in scalars(str(behavior))["Losses/Value Loss"]]
    assert len(steps) >= 2 and steps[-1] >= 400, steps


@pytest.mark.parametrize("method,factory,error", [
    ("on_start", "on_start_fails", "RuntimeError: dashboard unreachable"),
    ("write_stats", "write_fails", "RuntimeError: dashboard unreachable"),
    ("close", "close_fails", "RuntimeError: dashboard unreachable"),
    ("write_stats", "write_exits", "SystemExit: the plugin called sys.exit(5)"),
], ids=["on_start", "write_stats", "close", "sys_exit_in_write_stats"])
def test_a_writer_that_raises_is_reported_once_and_the_run_finishes(site, tmp_path, capsys,
                                                                    caplog, method, factory,
                                                                    error):
    module = site.install("flaky-writer", WRITERS, stats_writers={"flaky": factory})
    _, text, behavior = trains(tmp_path, capsys, caplog)
    warned = warnings_about(caplog, "Stats writer", "stats writer plugin 'flaky' from "
                                                    "flaky-writer", f"failed in {method}", error)
    assert len(warned) == 1, text
    assert "disabled for the rest of this run" in warned[0]
    assert len(warnings_about(caplog, "Stats writer")) == 1, text
    recorded = calls(module)
    broken = [m for who, m in recorded if who == "Broken"]
    assert broken.count(method) == 1, recorded  # never called again in the failing method
    if method == "on_start":
        assert "write_stats" not in broken
    if method == "write_stats":
        assert broken[-1] == "close"  # still allowed to release its files
    # the other writers go on: the plugin's own second writer and palaestra's
    mine = [m for who, m in recorded if who == "Recorder"]
    assert mine[0] == "on_start" and mine[-1] == "close" and mine.count("write_stats") >= 2
    tensorboard_still_written(behavior)


@pytest.mark.parametrize("factory,needle", [
    ("factory_raises", "its factory failed: OSError: cannot reach the metrics server"),
    ("factory_returns_none", "its factory returned None, not a list of StatsWriter"),
    ("factory_returns_a_writer", "not a list of StatsWriter"),
    ("factory_exits", "its factory failed: SystemExit: the plugin called sys.exit(9)"),
    ("not_callable", "'a string' is not callable"),
    ("no_such_factory", "AttributeError"),
])
def test_a_broken_writer_factory_is_skipped_and_the_run_finishes(site, tmp_path, capsys, caplog,
                                                                 factory, needle):
    site.install("bad-factory", WRITERS, stats_writers={"bad": factory})
    _, text, behavior = trains(tmp_path, capsys, caplog)
    assert warnings_about(caplog, "stats writer plugin 'bad' from bad-factory", needle), text
    tensorboard_still_written(behavior)


def test_non_writers_in_a_factorys_list_are_skipped_and_its_writers_kept(site, tmp_path, capsys,
                                                                         caplog):
    module = site.install("junk-list", WRITERS, stats_writers={"junk": "factory_returns_junk"})
    _, text, _ = trains(tmp_path, capsys, caplog)
    for junk in ("'not a writer'", "<class 'object'>"):
        assert warnings_about(caplog, f"Skipping {junk} from stats writer plugin 'junk' from "
                                      "junk-list: not a palaestra StatsWriter"), text
    assert ("Recorder", "write_stats") in calls(module)
