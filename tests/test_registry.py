"""The entry-point trainer registry, with throw-away plugin distributions.

Each plugin is a temporary folder on sys.path holding a package and a ``<dist>-0.1.dist-info``
folder (METADATA + entry_points.txt), which is all `importlib.metadata` needs to find it. Package
names are unique per test so that no module is reused from sys.modules."""
import importlib
import itertools
import logging
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Dict

import pytest
import yaml

from palaestra.config import ConfigLoader
from palaestra.exception import TrainerConfigError
from palaestra.registry import TRAINER_TYPE_GROUP, TrainerRegistry
from palaestra.trainers.ppo import PPOSettings, PPOTrainer

REPO_SRC = str(Path(__file__).resolve().parents[1] / "src")
_ids = itertools.count()

GOOD_PLUGIN = """
import os

from palaestra.trainers.ppo import PPOSettings, PPOTrainer


class MySettings(PPOSettings):
    my_flag: bool = False


class MyTrainer(PPOTrainer):
    @staticmethod
    def get_trainer_name():
        return "mytype"

    def create_policy(self, parsed_behavior_id, behavior_spec):
        marker = os.environ.get("MYTYPE_MARKER")
        if marker:
            with open(marker, "w") as fh:
                fh.write(f"{type(self).__name__} {type(self.hyperparameters).__name__} "
                         f"{self.hyperparameters.my_flag}")
        return super().create_policy(parsed_behavior_id, behavior_spec)


def get_type_and_setting():
    return {MyTrainer.get_trainer_name(): MyTrainer}, {MyTrainer.get_trainer_name(): MySettings}
"""

IMPORT_ERROR_PLUGIN = """
raise ImportError("this plugin needs a package that is not installed")
"""

WRONG_SHAPE_PLUGIN = """
def get_type_and_setting():
    return {"wrongshape": object}
"""

NO_SETTINGS_PLUGIN = """
from palaestra.trainers.ppo import PPOTrainer


def get_type_and_setting():
    return {"nosettings": PPOTrainer}, {}
"""


def make_plugin(root: Path, dist: str, source: str, entry_name: str,
                function: str = "get_type_and_setting", version: str = "0.1") -> str:
    """Write package + dist-info under root; returns the package name."""
    pkg = f"palaestra_test_plugin_{next(_ids)}_{os.getpid()}"
    (root / pkg).mkdir(parents=True)
    (root / pkg / "__init__.py").write_text("", encoding="utf-8")
    (root / pkg / "plugin.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[{TRAINER_TYPE_GROUP}]\n{entry_name} = {pkg}.plugin:{function}\n", encoding="utf-8")
    return pkg


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path (for this test only) to put plugin distributions in."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield root
    importlib.invalidate_caches()
    for name in set(sys.modules) - before:
        if name.startswith("palaestra_test_plugin_"):
            del sys.modules[name]


def fresh_registry() -> TrainerRegistry:
    importlib.invalidate_caches()
    return TrainerRegistry.from_entry_points()


def subprocess_env(plugin_root: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(plugin_root), REPO_SRC, env.get("PYTHONPATH")) if p)
    return env


def palaestra(*args: str, env: Dict[str, str], timeout: float = 120
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "palaestra", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


# ------------------------------------------------------------------------- good plugin


def test_builtin_ppo_comes_from_the_default_entry_point():
    registry = fresh_registry()
    info = registry.get("ppo")
    assert info.trainer_cls is PPOTrainer and info.settings_cls is PPOSettings
    assert info.entry_point == "default"
    assert info.distribution == "palaestra"
    assert info.version == metadata.version("palaestra")
    assert registry.failures == []


def test_good_plugin_is_found(plugin_dir):
    pkg = make_plugin(plugin_dir, "my-trainer-plugin", GOOD_PLUGIN, "mytype")
    registry = fresh_registry()
    assert {"ppo", "mytype"} <= set(registry.names())
    info = registry.get("mytype")
    module = importlib.import_module(f"{pkg}.plugin")
    assert info.trainer_cls is module.MyTrainer
    assert info.settings_cls is module.MySettings
    assert issubclass(info.settings_cls, PPOSettings)
    assert info.name == "mytype"
    assert info.entry_point == "mytype"
    assert info.distribution == "my-trainer-plugin"
    assert info.version == "0.1"
    assert registry.failures == []
    # the built-in is untouched
    assert registry.get("ppo").trainer_cls is PPOTrainer


def test_plugin_settings_subclass_is_a_dataclass_and_loads_from_yaml(plugin_dir):
    make_plugin(plugin_dir, "my-trainer-plugin", GOOD_PLUGIN, "mytype")
    registry = fresh_registry()
    loader = ConfigLoader(registry, source="plugin.yaml")
    options = loader.load({"behaviors": {"CartPole-v1": {
        "trainer_type": "mytype",
        "hyperparameters": {"my_flag": True, "batch_size": 64, "beta": 0.02}}}})
    hyper = options.behaviors["CartPole-v1"].hyperparameters
    assert type(hyper) is registry.get("mytype").settings_cls
    assert (hyper.my_flag, hyper.batch_size, hyper.beta) == (True, 64, 0.02)
    assert hyper.epsilon == 0.2 and hyper.beta_schedule is not None  # PPO's defaults, post_init
    assert options.behaviors["CartPole-v1"].as_dict()["hyperparameters"]["my_flag"] is True
    # the plugin's key is validated like a built-in one, and listed as allowed
    with pytest.raises(TrainerConfigError) as info:
        loader.load({"behaviors": {"CartPole-v1": {"trainer_type": "mytype",
                                                   "hyperparameters": {"my_flagg": True}}}})
    assert "behaviors.CartPole-v1.hyperparameters.my_flagg" in str(info.value)
    assert "Did you mean 'my_flag'" in str(info.value)
    # ppo does not know my_flag
    with pytest.raises(TrainerConfigError, match="unknown key 'my_flag'"):
        loader.load({"behaviors": {"CartPole-v1": {"hyperparameters": {"my_flag": True}}}})


def test_trainers_command_lists_builtin_plugin_and_broken_plugin(plugin_dir):
    # one subprocess for both checks: each start of palaestra costs seconds (torch import)
    pkg = make_plugin(plugin_dir, "my-trainer-plugin", GOOD_PLUGIN, "mytype")
    make_plugin(plugin_dir, "broken-plugin", IMPORT_ERROR_PLUGIN, "importfails")
    proc = palaestra("trainers", env=subprocess_env(plugin_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # (log lines, e.g. the broken plugin's "[WARNING] Skipping ...", also go to stdout)
    lines = [line.split() for line in proc.stdout.splitlines()
             if line.strip() and not line.startswith("[")]
    assert lines[0] == ["type", "package", "version", "module"]
    ppo = [words for words in lines if words[0] == "ppo"]
    mine = [words for words in lines if words[0] == "mytype"]
    assert len(ppo) == 1 and len(mine) == 1, proc.stdout
    assert ppo[0][1:3] == ["palaestra", metadata.version("palaestra")]
    assert mine[0][1:] == ["my-trainer-plugin", "0.1", f"{pkg}.plugin"]
    broken = [line for line in proc.stdout.splitlines() if line.startswith("broken plugin")]
    assert len(broken) == 1, proc.stdout
    assert broken[0].startswith(
        "broken plugin: entry point 'importfails' of broken-plugin: ImportError:")
    assert "not installed" in broken[0]
    assert not any(words[0] == "importfails" for words in lines)


def test_plugin_trains_end_to_end(plugin_dir, tmp_path):
    make_plugin(plugin_dir, "my-trainer-plugin", GOOD_PLUGIN, "mytype")
    cfg = tmp_path / "mytype.yaml"
    cfg.write_text(textwrap.dedent("""
        behaviors:
          CartPole-v1:
            trainer_type: mytype
            hyperparameters:
              my_flag: true
              batch_size: 64
              buffer_size: 256
            network_settings:
              hidden_units: 16
            summary_freq: 1000
        torch_settings:
          num_threads: 1
        """), encoding="utf-8")
    results = tmp_path / "results"
    marker = tmp_path / "marker.txt"
    env = subprocess_env(plugin_dir)
    env["MYTYPE_MARKER"] = str(marker)
    proc = palaestra("learn", str(cfg), "--env", "CartPole-v1", "--results-dir", str(results),
                     "--run-id", "plug", "--max-steps", "2000", "--seed", "1", env=env,
                     timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = results / "plug"
    assert (run / "CartPole-v1" / "checkpoint.pt").is_file()
    text = (run / "configuration.yaml").read_text(encoding="utf-8")
    assert "trainer_type: mytype" in text
    assert "my_flag: true" in text
    saved = yaml.safe_load(text)["behaviors"]["CartPole-v1"]
    assert saved["trainer_type"] == "mytype"
    assert saved["hyperparameters"]["my_flag"] is True
    assert saved["hyperparameters"]["batch_size"] == 64
    assert saved["max_steps"] == 2000
    # the plugin's own trainer class ran, with its own settings class
    assert marker.read_text(encoding="utf-8") == "MyTrainer MySettings True"


# ----------------------------------------------------------------------- broken plugins


@pytest.mark.parametrize("source,entry_name,error_type,needle", [
    (IMPORT_ERROR_PLUGIN, "importfails", "ImportError", "not installed"),
    (WRONG_SHAPE_PLUGIN, "wrongshape", "TypeError", "must return"),
    (NO_SETTINGS_PLUGIN, "nosettings", "TypeError", "no settings class"),
], ids=["import_error", "wrong_shape", "no_settings"])
def test_broken_plugin_is_reported_and_others_still_work(plugin_dir, caplog, source, entry_name,
                                                         error_type, needle):
    make_plugin(plugin_dir, "good-plugin", GOOD_PLUGIN, "mytype")
    make_plugin(plugin_dir, "broken-plugin", source, entry_name)
    caplog.set_level(logging.WARNING, logger="palaestra")
    registry = fresh_registry()

    assert len(registry.failures) == 1
    failure = registry.failures[0]
    assert failure.entry_point == entry_name
    assert failure.distribution == "broken-plugin"
    assert failure.error.startswith(f"{error_type}:")
    assert needle in failure.error

    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("palaestra")]
    assert any(entry_name in w and "broken-plugin" in w and needle in w for w in warnings), \
        warnings

    # the others load, and the broken one registered nothing
    assert registry.get("ppo").trainer_cls is PPOTrainer
    assert registry.get("mytype").distribution == "good-plugin"
    # other installed plugins (e.g. palaestra-trainer-plugin) may be present too
    assert {"ppo", "mytype"} <= set(registry.names())
    assert not set(registry.names()) & {"importfails", "wrongshape", "nosettings"}
    # asking for the broken type says it failed to load
    with pytest.raises(TrainerConfigError) as info:
        registry.get(entry_name)
    assert str(info.value).startswith(f"Invalid trainer type {entry_name} was found")
    assert f"Plugins that failed to load: {entry_name}" in str(info.value)


def test_learn_with_broken_plugin_type_names_the_failure(plugin_dir, tmp_path, capsys):
    # in-process through the CLI's main (a subprocess would cost a torch import)
    from palaestra.cli import main

    make_plugin(plugin_dir, "broken-plugin", IMPORT_ERROR_PLUGIN, "importfails")
    importlib.invalidate_caches()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("behaviors:\n  CartPole-v1:\n    trainer_type: importfails\n",
                   encoding="utf-8")
    results = tmp_path / "results"
    code = main(["learn", str(cfg), "--env", "CartPole-v1", "--results-dir", str(results),
                 "--run-id", "x"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("TrainerConfigError: ")
    assert "Invalid trainer type importfails was found" in err
    assert "Installed trainer types:" in err and "ppo" in err
    assert "Plugins that failed to load: importfails" in err
    assert not results.exists()


# ------------------------------------------------------------------ by hand / fakes


def test_register_by_hand():
    registry = TrainerRegistry()
    registry.register({"hand": PPOTrainer}, {"hand": PPOSettings}, distribution="notebook",
                      version="9.9")
    info = registry.get("hand")
    assert (info.trainer_cls, info.settings_cls) == (PPOTrainer, PPOSettings)
    assert (info.entry_point, info.distribution, info.version) == ("manual", "notebook", "9.9")
    assert registry.names() == ["hand"]
    with pytest.raises(TrainerConfigError, match="Installed trainer types: hand"):
        registry.get("ppo")


def test_register_by_hand_rejects_trainers_without_settings():
    registry = TrainerRegistry()
    with pytest.raises(TypeError, match="no settings class"):
        registry.register({"a": PPOTrainer, "b": PPOTrainer}, {"a": PPOSettings})
    assert registry.names() == []


def test_empty_registry_error():
    with pytest.raises(TrainerConfigError, match="Installed trainer types: none"):
        TrainerRegistry().get("ppo")


def test_known_provider_hint():
    registry = TrainerRegistry()  # as if the plugin package were not installed
    with pytest.raises(TrainerConfigError) as info:
        registry.get("a2c")
    assert "palaestra-trainer-plugin" in str(info.value)


def test_fake_entry_points_without_distribution(plugin_dir):
    pkg = make_plugin(plugin_dir, "unused-dist", GOOD_PLUGIN, "mytype")
    eps = [metadata.EntryPoint("mytype", f"{pkg}.plugin:get_type_and_setting",
                               TRAINER_TYPE_GROUP),
           metadata.EntryPoint("missing", "no_such_module_xyz:fn", TRAINER_TYPE_GROUP)]
    registry = TrainerRegistry.from_entry_points(entry_points=eps)
    assert registry.names() == ["mytype"]
    assert (registry.get("mytype").distribution, registry.get("mytype").version) == \
        ("unknown", "?")
    assert [(f.entry_point, f.distribution) for f in registry.failures] == [
        ("missing", "unknown")]
    assert "ModuleNotFoundError" in registry.failures[0].error


def test_plugin_may_replace_a_builtin_type_with_a_warning(plugin_dir, caplog):
    replacement = GOOD_PLUGIN.replace('return "mytype"', 'return "ppo"')
    pkg = make_plugin(plugin_dir, "ppo-replacement", replacement, "aaa_replace")
    caplog.set_level(logging.WARNING, logger="palaestra")
    registry = fresh_registry()
    info = registry.get("ppo")
    # the built-in `default` loads first even though 'aaa_replace' sorts before it
    assert info.distribution == "ppo-replacement"
    assert info.trainer_cls is importlib.import_module(f"{pkg}.plugin").MyTrainer
    assert any("replaces" in r.getMessage() and "ppo-replacement" in r.getMessage()
               for r in caplog.records)


def test_register_by_hand_checks_the_classes():
    registry = TrainerRegistry()
    with pytest.raises(TypeError, match="'a': class builtins.object is not a class deriving "
                                        "palaestra's RLTrainer"):
        registry.register({"a": object}, {"a": PPOSettings})
    with pytest.raises(TypeError, match="'b': settings 'junk' is not a class deriving "
                                        "palaestra's HyperparamSettings"):
        registry.register({"b": PPOTrainer}, {"b": "junk"})
    assert registry.names() == []


def test_a_junk_registration_is_refused_whole_and_the_builtin_stays(plugin_dir, caplog):
    # one good and one junk type in one plugin: nothing of it registers, ppo stays built-in
    junk = GOOD_PLUGIN.replace(
        "return {MyTrainer.get_trainer_name(): MyTrainer}, "
        "{MyTrainer.get_trainer_name(): MySettings}",
        "return {'mytype': MyTrainer, 'ppo': print}, {'mytype': MySettings, 'ppo': MySettings}")
    assert junk != GOOD_PLUGIN
    make_plugin(plugin_dir, "junk-plugin", junk, "junk")
    caplog.set_level(logging.WARNING, logger="palaestra")
    registry = fresh_registry()
    assert registry.get("ppo").trainer_cls is PPOTrainer
    assert "mytype" not in registry.names()
    (failure,) = registry.failures
    assert (failure.entry_point, failure.distribution) == ("junk", "junk-plugin")
    assert "trainer type 'ppo': <built-in function print> is not a class" in failure.error
