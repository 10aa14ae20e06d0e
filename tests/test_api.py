"""`palaestra.learn`: training from Python, as in a notebook. It returns the run's folder and
final stats, raises typed exceptions, and leaves the process as it found it unless asked."""
import os
import subprocess
import sys
import textwrap

import pytest

import palaestra
from palaestra import PalaestraError, TrainerConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "src", "palaestra", "configs", "ppo", "3DBall.yaml")
SHORT = {"behaviors": {"3DBall": {"summary_freq": 1200, "checkpoint_interval": 2400,
                                  "hyperparameters": {"buffer_size": 1200}}}}

NOTEBOOK = textwrap.dedent('''
    import json, signal, sys
    import torch
    from threadpoolctl import threadpool_info
    import palaestra
    import palaestra.accel.process as process

    calls = []
    for name in ("keep_freed_memory", "tune_process", "set_threads"):
        real = getattr(process, name)
        setattr(process, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))

    def state():
        return {"threads": torch.get_num_threads(), "denormals": process.flushes_denormals(),
                "blas": sorted(i["num_threads"] for i in threadpool_info()
                               if i["user_api"] == "blas"),
                "rng": torch.random.get_rng_state().sum().item(),
                "signals": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]}

    results_dir, accel = sys.argv[1], sys.argv[2]
    short = json.loads(sys.argv[3])
    before = state()
    runs = []
    for run_id in ("first", "second"):  # twice in one process, as a notebook's cells would
        result = palaestra.learn(sys.argv[4], run_id=run_id, results_dir=results_dir,
                                 max_steps=2400, accel=accel, **short)
        runs.append({"path": result.path, "steps": result.steps, "stats": result.stats})
        assert state() == before, (state(), before)
    assert calls == [], calls
    tuned = palaestra.learn(sys.argv[4], run_id="tuned", results_dir=results_dir,
                            max_steps=1200, accel=accel, tune_process=True, **short)
    print(json.dumps({"runs": runs, "before": before, "tuned": state(), "calls": calls}))
''')


@pytest.mark.parametrize("accel", ["auto", "off"])
def test_trains_twice_in_one_process_and_leaves_it_as_it_was(tmp_path, accel):
    import json

    proc = subprocess.run([sys.executable, "-c", NOTEBOOK, str(tmp_path), accel,
                           json.dumps(SHORT), CONFIG], capture_output=True, text=True,
                          cwd=str(tmp_path), env={**os.environ, "PALAESTRA_NO_PROGRESS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for run, run_id in zip(out["runs"], ("first", "second")):
        assert run["path"] == os.path.join(str(tmp_path), run_id)
        assert os.path.isfile(os.path.join(run["path"], "3DBall", "checkpoint.pt"))
        assert run["steps"]["3DBall"] >= 2400
        assert "Environment/Cumulative Reward" in run["stats"]["3DBall"]
    # a fresh process uses every core; tune_process=True is what `palaestra learn` does
    assert out["before"]["denormals"] is False
    if accel == "auto":
        assert out["tuned"]["threads"] == 1 and out["tuned"]["denormals"] is True
        assert "tune_process" in out["calls"]
    else:  # accel off tunes nothing the config does not name
        assert out["tuned"]["threads"] == out["before"]["threads"]
        assert out["tuned"]["denormals"] is False


def test_errors_are_exceptions_not_exit_codes(tmp_path):
    with pytest.raises(TrainerConfigError, match="learning_rate"):
        palaestra.learn({"behaviors": {"3DBall": {"trainer_type": "ppo", "hyperparameters": {
            "learning_rate": "fast"}}}}, env="3DBall", results_dir=str(tmp_path))
    with pytest.raises(PalaestraError, match="run_id"):
        palaestra.learn(CONFIG, run_id="../outside", results_dir=str(tmp_path))
    with pytest.raises(TypeError, match="allowed: run_id"):
        palaestra.learn(CONFIG, runid="x")
    with pytest.raises(TypeError, match="mapping"):
        palaestra.learn(CONFIG, torch_settings="off")
    assert not os.listdir(tmp_path)  # nothing was written


def test_a_mapping_config_and_section_overrides_merge_into_the_file(tmp_path):
    result = palaestra.learn(CONFIG, run_id="merged", results_dir=str(tmp_path), max_steps=600,
                             accel="off", **{"behaviors": {"3DBall": {"summary_freq": 300}}},
                             env_settings={"num_envs": 1})
    saved = (tmp_path / "merged" / "configuration.yaml").read_text()
    assert "summary_freq: 300" in saved and "buffer_size: 12000" in saved  # the rest kept
    assert "accel: 'off'" in saved  # quoted: a bare off is YAML 1.1's false
    assert result.steps == {"3DBall": 600} or result.steps["3DBall"] >= 600


def test_the_command_tells_its_version_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from palaestra.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('torch' in sys.modules, code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[:2] == ["palaestra", palaestra.__version__] and out[2:] == ["False", "0"]


@pytest.mark.parametrize("argv", [["--help"], ["learn", "--help"], ["play", "--help"],
                                  ["plot", "--help"], ["configs"]])
def test_help_and_the_config_list_do_not_import_torch(argv):
    import subprocess
    import sys

    code = ("import sys; from palaestra.cli import main\n"
            f"try:\n    code = main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH', 'torch' in sys.modules, code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "TORCH False 0", out
