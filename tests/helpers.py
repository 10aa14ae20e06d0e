"""Shared test helpers: run the CLI in-process and read TensorBoard scalars back."""
import os
from typing import Dict, List, Tuple

from palaestra.cli import main

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)


def learn(*args: str) -> int:
    os.environ["PALAESTRA_NO_PROGRESS"] = "1"
    return main(["learn", *args])


def discrete_actions(*per_agent: int):
    """One discrete branch: each agent's action, as the ActionTuple an environment takes."""
    import numpy as np

    from palaestra.envs.base import ActionTuple

    disc = np.asarray(per_agent, np.int64).reshape(-1, 1)
    return ActionTuple(np.zeros((len(disc), 0), np.float32), disc)


def step_behavior(env, name: str, acts):
    """Set one behavior's actions, step, and return its (decision, terminal) steps."""
    env.set_actions(name, acts)
    env.step()
    return env.get_steps(name)


def assert_seeded(rollout) -> None:
    """`rollout(seed)` -> list of arrays: the same seed gives the same arrays, another seed
    another first array."""
    import numpy as np

    first = rollout(3)
    for x, y in zip(first, rollout(3)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], rollout(4)[0])


def scalars(behavior_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """All scalar series of a behavior's event files, as (step, value) lists."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(behavior_dir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


_PLANS: dict = {}


def run_context(artifact_path, **kwargs):
    """A RunContext for trainers built by hand, with this session's accel plan
    (PALAESTRA_TEST_ACCEL: auto or off), so that they are tested both ways."""
    from palaestra import Accel, RunContext
    from conftest import TEST_ACCEL

    if TEST_ACCEL not in _PLANS:
        _PLANS[TEST_ACCEL] = Accel.from_mode(TEST_ACCEL)
    return RunContext(artifact_path=None if artifact_path is None else str(artifact_path),
                      accel=_PLANS[TEST_ACCEL], **kwargs)


def fault_config(tmp_path, max_steps=800, **env_settings):
    """A small PPO config on `worker_envs:faulty` (2 copies, seed 3) for the fault tests of
    worker processes and Ray actors; `env_settings` adds keys (e.g. ``ray={...}``)."""
    import yaml

    path = tmp_path / "faulty.yaml"
    path.write_text(yaml.safe_dump({"behaviors": {"faulty": {
        "trainer_type": "ppo",
        "hyperparameters": {"batch_size": 64, "buffer_size": 256, "num_epoch": 2},
        "network_settings": {"hidden_units": 16, "num_layers": 1},
        "max_steps": max_steps, "time_horizon": 32, "summary_freq": 400}},
        "env_settings": {"env_path": "worker_envs:faulty", "num_envs": 2, "seed": 3,
                         **env_settings}}))
    return str(path)


def assert_stops_past_restart_quota(tmp_path, capsys, config, *flags):
    """A `fault_config` run (with `flags`: workers or Ray) whose every copy kills itself at
    its 60th step in every life: past one restart it stops with exit code 1, the quota named,
    and a checkpoint saved before max_steps."""
    import torch

    code = learn(config, "--run-id", "q", "--results-dir", str(tmp_path), *flags,
                 "--max-lifetime-restarts", "1", "--restarts-rate-limit-n", "-1",
                 "--env-args", "at=60", "how=kill")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "exceeded the allowed restarts" in err and "max_lifetime_restarts 1" in err
    saved = torch.load(tmp_path / "q" / "faulty" / "checkpoint.pt", weights_only=True)
    assert 0 < saved["step"] < 800


def assert_same_steps(got, want) -> None:
    """Two `DecisionSteps` (or `TerminalSteps`) alike field for field: observations, then
    every other field None where the other is, else of the same dtype, shape and values."""
    import numpy as np

    assert type(got) is type(want) and len(got.obs) == len(want.obs)
    for a, b in zip(got.obs, want.obs):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    for name in want.__dataclass_fields__:
        if name == "obs":
            continue
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if b is not None:
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b)
