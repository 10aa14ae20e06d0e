"""Bad input that aims at the file system: run ids, results folders, --force, behavior names,
and tampered or damaged state files (checkpoints, training_status.json, buffers).

Each case runs the real CLI in a scratch project beside a neighbour folder (tests/badinput.py):
a refusal must exit non-zero with one clear line and change nothing outside the run's folder; a
tampered bookkeeping file that palaestra can do without must not stop the run, and must not make
it touch anything outside its folder either.
"""
import os
import shutil

import pytest
import torch
import yaml

from badinput import project_with, refused, run

CARTPOLE = yaml.safe_dump({"behaviors": {"CartPole-v1": {
    "trainer_type": "ppo", "hyperparameters": {"batch_size": 32, "buffer_size": 96},
    "network_settings": {"hidden_units": 8, "num_layers": 1}, "max_steps": 300,
    "summary_freq": 100, "checkpoint_interval": 100, "time_horizon": 16}},
    "env_settings": {"env_path": "CartPole-v1", "seed": 1}})
SAC = yaml.safe_dump({"behaviors": {"Pendulum-v1": {
    "trainer_type": "sac", "hyperparameters": {"batch_size": 16, "buffer_size": 1000,
                                               "buffer_init_steps": 50,
                                               "save_replay_buffer": True},
    "network_settings": {"hidden_units": 8, "num_layers": 1}, "max_steps": 150,
    "summary_freq": 50, "checkpoint_interval": 50, "time_horizon": 16}},
    "env_settings": {"env_path": "Pendulum-v1", "seed": 1}})
LEARN = ["learn", "config.yaml"]


@pytest.fixture
def project(tmp_path):
    return project_with(tmp_path, {"config.yaml": CARTPOLE})


# -- run ids ---------------------------------------------------------------------------------
BAD_IDS = ["..", ".", "", " ", "../../x", "../escaped", "/tmp/palaestra-abs-run", "a/b",
           "a\\b", "x\ny", "tab\there", "bell\x07", "esc\x1b[31m", " lead", "trail ",
           "x" * 300, "ü" * 120]


@pytest.mark.parametrize("run_id", BAD_IDS, ids=lambda s: repr(s)[:24])
def test_a_run_id_that_is_not_one_folder_name_is_refused(project, capsys, run_id):
    refused(project, LEARN + ["--run-id", run_id], capsys, "run_id")


@pytest.mark.parametrize("run_id", ["..", ".", "", "/tmp", "../neighbour"])
def test_force_with_an_odd_run_id_deletes_nothing(project, capsys, run_id):
    os.makedirs(os.path.join(project, "results", "old-run", "run_logs"))
    refused(project, LEARN + ["--run-id", run_id, "--force"], capsys, "run_id")


@pytest.mark.parametrize("run_id", ["..", "../../x", ""])
def test_a_config_file_run_id_with_force_is_refused(tmp_path, capsys, run_id):
    config = yaml.safe_load(CARTPOLE)
    config["checkpoint_settings"] = {"run_id": run_id, "force": True}
    project = project_with(tmp_path, {"config.yaml": yaml.safe_dump(config)})
    refused(project, LEARN, capsys, "run_id")


@pytest.mark.parametrize("source", ["../neighbour", "/tmp", "..", "no-such-run"])
def test_initialize_from_must_name_a_run_in_the_results_folder(project, capsys, source):
    refused(project, LEARN + ["--run-id", "r", "--initialize-from", source], capsys,
            "initialize")


# -- results folders and --force --------------------------------------------------------------
def test_a_results_dir_that_is_a_file_is_refused(project, capsys):
    refused(project, LEARN + ["--run-id", "r", "--results-dir", "notes.txt"], capsys,
            "notes.txt", "not a folder")


def test_a_results_dir_below_a_file_is_refused(project, capsys):
    refused(project, LEARN + ["--run-id", "r", "--results-dir", "notes.txt/results"], capsys,
            "notes.txt")


def test_force_never_deletes_a_folder_that_is_not_a_run(project, capsys):
    os.makedirs(os.path.join(project, "results", "r"))
    with open(os.path.join(project, "results", "r", "thesis.tex"), "w") as fh:
        fh.write("years of work")
    refused(project, LEARN + ["--run-id", "r", "--force"], capsys, "not a palaestra run")


def test_force_never_follows_a_run_folder_that_is_a_link(project, capsys):
    os.makedirs(os.path.join(project, "results"))
    os.symlink(os.path.join(os.path.dirname(project), "neighbour"),
               os.path.join(project, "results", "r"))
    refused(project, LEARN + ["--run-id", "r", "--force"], capsys, "link")


def test_resume_of_a_run_that_does_not_exist_is_refused(project, capsys):
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "not found")


def test_resume_and_force_together_are_refused(project, capsys):
    os.makedirs(os.path.join(project, "results", "r", "run_logs"))
    refused(project, LEARN + ["--run-id", "r", "--resume", "--force"], capsys, "contradict",
            allowed=["project/results/r"])


def test_force_replaces_a_real_run_and_only_it(project, capsys):
    assert run(project, LEARN + ["--run-id", "r"], capsys).rc == 0
    outcome = run(project, LEARN + ["--run-id", "r", "--force"], capsys,
                  allowed=["project/results/r"])
    assert outcome.rc == 0 and not outcome.changed, outcome


# -- behavior names from the environment -----------------------------------------------------
@pytest.mark.parametrize("name", ["../../../../escaped", "..", "a/../../b", "/abs", "x\ny"],
                         ids=repr)
def test_a_behavior_name_that_would_leave_the_run_folder_is_refused(tmp_path, capsys, name):
    config = {"env_settings": {"env_path": "fault_envs:renamed", "env_args": {"name": name}}}
    project = project_with(tmp_path, {"config.yaml": yaml.safe_dump(config)})
    refused(project, LEARN + ["--run-id", "r", "--max-steps", "100"], capsys, "behavior name")


# -- tampered and damaged state files --------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished CartPole run and a finished SAC run (with its replay buffer)."""
    base = tmp_path_factory.mktemp("trained")
    from helpers import learn
    for name, config in (("cartpole", CARTPOLE), ("sac", SAC)):
        path = base / f"{name}.yaml"
        path.write_text(config)
        assert learn(str(path), "--run-id", name, "--results-dir", str(base / "results")) == 0
    return base / "results"


def _copy_run(trained, tmp_path, name, config):
    project = project_with(tmp_path, {"config.yaml": config})
    shutil.copytree(trained / name, os.path.join(project, "results", "r"))
    return project, os.path.join(project, "results", "r")


def _more_steps(config, steps):
    data = yaml.safe_load(config)
    for behavior in data["behaviors"].values():
        behavior["max_steps"] = steps
    return yaml.safe_dump(data)


RUN = ["project/results/r"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken zip"],
                         ids=["empty", "garbage", "broken-zip"])
def test_a_damaged_checkpoint_with_no_step_checkpoint_is_refused(trained, tmp_path, capsys,
                                                                 content):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    behavior = os.path.join(run_dir, "CartPole-v1")
    for name in os.listdir(behavior):
        if name.endswith(".pt"):
            os.remove(os.path.join(behavior, name))
    with open(os.path.join(behavior, "checkpoint.pt"), "wb") as fh:
        fh.write(content)
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "checkpoint.pt",
            "CheckpointError", allowed=RUN)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused_not_loaded(trained, tmp_path, capsys):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    behavior = os.path.join(run_dir, "CartPole-v1")
    for name in os.listdir(behavior):
        if name.endswith(".pt"):
            torch.save({"modules": {}, "step": 1, "x": _Evil()}, os.path.join(behavior, name))
    out = refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "could run code",
                  allowed=RUN)
    assert "weights_only=False" not in out.err and "posix.system" in out.err
    assert not os.path.exists(os.path.join(project, "pwned"))


def test_a_damaged_checkpoint_falls_back_to_the_newest_step_checkpoint(trained, tmp_path,
                                                                       capsys, caplog):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    with open(os.path.join(run_dir, "CartPole-v1", "checkpoint.pt"), "wb") as fh:
        fh.write(b"\0" * 100)
    outcome = run(project, LEARN + ["--run-id", "r", "--resume"], capsys, allowed=RUN)
    assert outcome.rc == 0 and not outcome.changed, outcome
    assert "resuming from" in caplog.text and "CartPole-v1-3" in caplog.text


@pytest.mark.parametrize("payload", [{"step": 5}, {"modules": {}}, {"modules": [], "step": 1},
                                     {"modules": {}, "step": -4}, [1, 2, 3]],
                         ids=["no-modules", "no-step", "modules-list", "negative", "list"])
def test_a_checkpoint_that_is_not_palaestras_is_refused(trained, tmp_path, capsys, payload):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    behavior = os.path.join(run_dir, "CartPole-v1")
    for name in os.listdir(behavior):
        if name.endswith(".pt"):
            torch.save(payload, os.path.join(behavior, name))
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "not a palaestra checkpoint",
            allowed=RUN)


def test_a_checkpoint_of_another_network_is_refused(trained, tmp_path, capsys):
    config = yaml.safe_load(_more_steps(CARTPOLE, 400))
    config["behaviors"]["CartPole-v1"]["network_settings"]["hidden_units"] = 32
    project, _ = _copy_run(trained, tmp_path, "cartpole", yaml.safe_dump(config))
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "does not fit",
            allowed=RUN)


@pytest.mark.parametrize("name", ["../../../neighbour/keep.txt", "/etc/passwd", "buffer-x.npz"])
def test_a_checkpoint_naming_a_foreign_buffer_file_is_refused(trained, tmp_path, capsys, name):
    project, run_dir = _copy_run(trained, tmp_path, "sac", _more_steps(SAC, 250))
    behavior = os.path.join(run_dir, "Pendulum-v1")
    for file in os.listdir(behavior):
        if file.endswith(".pt"):
            saved = torch.load(os.path.join(behavior, file), weights_only=True)
            saved["buffer_file"] = name
            torch.save(saved, os.path.join(behavior, file))
    refused(project, ["learn", "config.yaml", "--run-id", "r", "--resume"], capsys,
            "not a name palaestra writes", allowed=RUN)


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x05\x06" + b"\0" * 18],
                         ids=["empty", "garbage", "empty-zip"])
def test_a_damaged_replay_buffer_is_refused(trained, tmp_path, capsys, content):
    project, run_dir = _copy_run(trained, tmp_path, "sac", _more_steps(SAC, 250))
    behavior = os.path.join(run_dir, "Pendulum-v1")
    (buffer,) = [f for f in os.listdir(behavior) if f.startswith("buffer-")]
    with open(os.path.join(behavior, buffer), "wb") as fh:
        fh.write(content)
    refused(project, ["learn", "config.yaml", "--run-id", "r", "--resume"], capsys, buffer,
            allowed=RUN)


def test_a_replay_buffer_of_other_shapes_is_refused(trained, tmp_path, capsys):
    import numpy as np
    project, run_dir = _copy_run(trained, tmp_path, "sac", _more_steps(SAC, 250))
    behavior = os.path.join(run_dir, "Pendulum-v1")
    (buffer,) = [f for f in os.listdir(behavior) if f.startswith("buffer-")]
    np.savez(os.path.join(behavior, buffer), **{"key|done": np.zeros(3),
                                                "obs|obs|0": np.zeros((5, 3))})
    refused(project, ["learn", "config.yaml", "--run-id", "r", "--resume"], capsys, buffer,
            allowed=RUN)


@pytest.mark.parametrize("status", [
    "", "{", "[]", "null", '{"CartPole-v1": 5}',
    '{"CartPole-v1": {"checkpoints": [{"steps": 1, "file_path": "../../../neighbour/keep.txt"}]}}',
    '{"CartPole-v1": {"checkpoints": [{"steps": "x", "file_path": "/etc/hostname"}]}}',
], ids=["empty", "truncated", "list", "null", "number", "path-outside", "bad-steps"])
def test_a_tampered_status_file_neither_stops_the_run_nor_deletes_anything(
        trained, tmp_path, capsys, status):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 900))
    with open(os.path.join(run_dir, "run_logs", "training_status.json"), "w") as fh:
        fh.write(status)
    outcome = run(project, LEARN + ["--run-id", "r", "--resume"], capsys, allowed=RUN)
    assert outcome.rc == 0, outcome
    assert not outcome.changed, outcome.changed
    assert "Traceback" not in outcome.out + outcome.err


def test_a_shortened_flag_is_not_taken_for_a_longer_one(project, capsys):
    refused(project, LEARN + ["--run-id", "r", "--num-env", "2"], capsys, "--num-env")


def test_a_missing_init_path_names_the_key(tmp_path, capsys):
    config = yaml.safe_load(CARTPOLE)
    config["behaviors"]["CartPole-v1"]["init_path"] = "nope/checkpoint.pt"
    project = project_with(tmp_path, {"config.yaml": yaml.safe_dump(config)})
    refused(project, LEARN + ["--run-id", "r"], capsys, "init_path", "does not exist")


# -- links planted in a run folder, runs in use, reserved names ------------------------------
def test_a_run_logs_link_to_outside_is_refused(trained, tmp_path, capsys):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    outside = os.path.join(os.path.dirname(project), "neighbour")
    with open(os.path.join(outside, "db.tmp-42"), "w") as fh:
        fh.write("precious")
    shutil.rmtree(os.path.join(run_dir, "run_logs"))
    os.symlink(outside, os.path.join(run_dir, "run_logs"))
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "run_logs", "link",
            allowed=RUN)


def test_links_planted_at_temporary_names_are_not_written_through(trained, tmp_path, capsys):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    outside = os.path.join(os.path.dirname(project), "neighbour")
    pid = os.getpid()  # the run is in-process: its temporary names end in this pid
    for folder, name in (("CartPole-v1", "checkpoint.pt"), ("CartPole-v1", "CartPole-v1-400.pt"),
                         ("run_logs", "training_status.json"), ("", "configuration.yaml")):
        victim = os.path.join(outside, f"victim-{name}")
        with open(victim, "w") as fh:
            fh.write("ORIGINAL")
        os.symlink(victim, os.path.join(run_dir, folder, f"{name}.tmp-{pid}"))
    outcome = run(project, LEARN + ["--run-id", "r", "--resume"], capsys, allowed=RUN)
    assert outcome.rc == 0 and not outcome.changed, outcome


@pytest.mark.parametrize("status", ["[" * 200_000, "dir"], ids=["deep", "a-folder"])
def test_a_status_file_that_cannot_be_read_is_rebuilt(trained, tmp_path, capsys, status):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    path = os.path.join(run_dir, "run_logs", "training_status.json")
    os.remove(path)
    if status == "dir":
        os.mkdir(path)
    else:
        with open(path, "w") as fh:
            fh.write(status)
    outcome = run(project, LEARN + ["--run-id", "r", "--resume"], capsys, allowed=RUN)
    assert outcome.rc == 0 and not outcome.changed, outcome
    with open(path) as fh:
        assert "CartPole-v1" in fh.read()


def _rewrite_checkpoints(run_dir, behavior, change):
    folder = os.path.join(run_dir, behavior)
    for name in os.listdir(folder):
        if name.endswith(".pt"):
            saved = torch.load(os.path.join(folder, name), weights_only=True)
            change(saved)
            torch.save(saved, os.path.join(folder, name))


def _nan_weights(saved):
    for module in saved["modules"].values():
        for value in module.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                value.fill_(float("nan"))


@pytest.mark.parametrize("change, needle", [
    (lambda s: s.update(updates="x"), "bad trainer state"),
    (lambda s: s.update(step=10 ** 30), "not a palaestra checkpoint"),
    (lambda s: s.update(step=True), "not a palaestra checkpoint"),
    (_nan_weights, "not finite"),
], ids=["updates-text", "huge-step", "bool-step", "nan-weights"])
def test_a_checkpoint_with_impossible_values_is_refused(trained, tmp_path, capsys, change,
                                                       needle):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    _rewrite_checkpoints(run_dir, "CartPole-v1", change)
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, needle, allowed=RUN)


def test_a_compressed_checkpoint_is_refused_before_it_is_expanded(trained, tmp_path, capsys):
    import zipfile
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    folder = os.path.join(run_dir, "CartPole-v1")
    for name in os.listdir(folder):
        if name.endswith(".pt"):
            path = os.path.join(folder, name)
            with zipfile.ZipFile(path) as archive:
                members = [(info.filename, archive.read(info)) for info in archive.infolist()]
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                for member, data in members:
                    archive.writestr(member, data)
    refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "compressed", allowed=RUN)


def test_falling_back_to_a_step_checkpoint_whose_buffer_was_rotated_away(trained, tmp_path,
                                                                         capsys, caplog):
    project, run_dir = _copy_run(trained, tmp_path, "sac", _more_steps(SAC, 250))
    folder = os.path.join(run_dir, "Pendulum-v1")
    steps = sorted(int(n.split("-")[-1][:-3]) for n in os.listdir(folder)
                   if n.startswith("Pendulum-v1-") and n.endswith(".pt"))
    for name in ("checkpoint.pt", f"Pendulum-v1-{steps[-1]}.pt"):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(b"junk")
    outcome = run(project, ["learn", "config.yaml", "--run-id", "r", "--resume"], capsys,
                  allowed=RUN)
    assert outcome.rc == 0 and not outcome.changed, outcome
    assert "was not kept: the run goes on with an empty buffer" in caplog.text


def test_a_run_in_use_is_neither_resumed_nor_forced(trained, tmp_path, capsys):
    from palaestra.paths import lock_run
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 400))
    lock = lock_run(run_dir)  # another process training it
    try:
        refused(project, LEARN + ["--run-id", "r", "--resume"], capsys, "in use", allowed=RUN)
        refused(project, LEARN + ["--run-id", "r", "--force"], capsys, "in use")
        assert os.path.exists(os.path.join(run_dir, "CartPole-v1", "checkpoint.pt"))
    finally:
        lock.close()


@pytest.mark.parametrize("name", ["run_logs", "configuration.yaml", "run_logs/x"])
def test_a_behavior_named_like_palaestras_own_files_is_refused(tmp_path, capsys, name):
    config = {"env_settings": {"env_path": "fault_envs:renamed", "env_args": {"name": name}}}
    project = project_with(tmp_path, {"config.yaml": yaml.safe_dump(config)})
    refused(project, LEARN + ["--run-id", "r", "--max-steps", "100"], capsys, "palaestra's own")


def test_a_behavior_folder_inside_another_behaviors_is_refused():
    from palaestra.paths import UnsafePathError, check_behavior_folders
    check_behavior_folders(["m", "ALE/Pong-v5", "ALE/Breakout-v5"])
    with pytest.raises(UnsafePathError, match="inside the first"):
        check_behavior_folders(["m", "m/buffer-5.npz"])


def test_no_reward_signal_is_refused(tmp_path, capsys):
    config = yaml.safe_load(CARTPOLE)
    config["behaviors"]["CartPole-v1"]["reward_signals"] = {}
    project = project_with(tmp_path, {"config.yaml": yaml.safe_dump(config)})
    refused(project, LEARN + ["--run-id", "r"], capsys, "reward_signals", "extrinsic")


def test_unreadable_newer_step_checkpoints_do_not_push_new_ones_out_of_rotation(
        trained, tmp_path, capsys, caplog):
    project, run_dir = _copy_run(trained, tmp_path, "cartpole", _more_steps(CARTPOLE, 700))
    folder = os.path.join(run_dir, "CartPole-v1")
    for step in range(1000, 1020):  # above the run's step: they would rank as the newest
        with open(os.path.join(folder, f"CartPole-v1-{step}.pt"), "w") as fh:
            fh.write("junk")
    outcome = run(project, LEARN + ["--run-id", "r", "--resume"], capsys, allowed=RUN)
    assert outcome.rc == 0, outcome
    kept = sorted(int(n[len("CartPole-v1-"):-3]) for n in os.listdir(folder)
                  if n.startswith("CartPole-v1-") and n.endswith(".pt"))
    assert len(kept) == 5 and 700 <= kept[-1] < 1000, kept
    assert len([n for n in os.listdir(folder) if n.endswith(".unreadable")]) == 20
    warning = [r.message for r in caplog.records if "unreadable" in r.message][0]
    assert "and 17 more unreadable" in warning and warning.count("cannot be read") == 3


def test_an_empty_results_dir_is_refused(project, capsys):
    refused(project, LEARN + ["--run-id", "r", "--results-dir", ""], capsys, "results_dir")
