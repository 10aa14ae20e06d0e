"""Promises of docs/plugin-api.md that no other test holds: PPO's names at the top level, the
trainer's policy / optimizer before `add_policy`, `build` from a `RunContext`, the policy told
when its weights change, opting out of advantage normalisation, and `super().__post_init__()`
in settings."""
import pathlib
from typing import Dict, List, Type

import numpy as np
import pytest

import palaestra
from palaestra import (ActionSpec, AgentBuffer, BehaviorIdentifiers, BehaviorSpec, BufferKey,
                       HyperparamSettings, NetworkSettings, ObservationSpec,
                       OffPolicyHyperparamSettings, OnPolicyHyperparamSettings, OnPolicyTrainer,
                       PalaestraError, RunContext, StatsReporter, TorchOptimizer, TorchPolicy,
                       TrainerNotReadyError, TrainerSettings)


def test_ppo_names_are_importable_from_palaestra() -> None:
    from palaestra import PPOSettings, PPOTrainer, TorchPPOOptimizer
    from palaestra.trainers import ppo

    assert (PPOSettings, PPOTrainer, TorchPPOOptimizer) == \
        (ppo.PPOSettings, ppo.PPOTrainer, ppo.TorchPPOOptimizer)
    assert {"PPOSettings", "PPOTrainer", "TorchPPOOptimizer"} <= set(palaestra.__all__)
    with pytest.raises(AttributeError):
        palaestra.NoSuchName  # noqa: B018


class _Recording(TorchOptimizer):
    """Keeps the advantages each minibatch reaches `update` with."""

    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        super().__init__(policy, trainer_settings)
        self.seen: List[np.ndarray] = []

    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        self.seen.append(batch[BufferKey.ADVANTAGES].copy())
        return {}


class _Trainer(OnPolicyTrainer[OnPolicyHyperparamSettings]):
    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        return self.actor_critic_policy(behavior_spec, shared_critic=False)

    def create_optimizer(self) -> TorchOptimizer:
        return _Recording(self.policy, self.trainer_settings)


class _RawTrainer(_Trainer):
    normalize_advantages = False


_SPEC = BehaviorSpec([ObservationSpec((2,))], ActionSpec.create_discrete((2,)))


def _settings(n: int) -> TrainerSettings:
    hp = OnPolicyHyperparamSettings(batch_size=n, buffer_size=n, num_epoch=1)
    return TrainerSettings(trainer_type="x", hyperparameters=hp, checkpoint_interval=4,
                           network_settings=NetworkSettings(hidden_units=4, num_layers=1))


def _make(cls: Type[_Trainer], tmp_path: pathlib.Path, n: int) -> _Trainer:
    return cls.build("B", _settings(n), _SPEC, RunContext(artifact_path=str(tmp_path)))


def test_policy_and_optimizer_before_add_policy_raise_a_palaestra_error(tmp_path) -> None:
    trainer = _Trainer("B", _settings(4), RunContext(artifact_path=str(tmp_path)))
    with pytest.raises(TrainerNotReadyError, match="add_policy"):
        trainer.policy
    with pytest.raises(PalaestraError, match="add_policy"):
        trainer.optimizer
    bid = BehaviorIdentifiers.from_name_behavior_id("B")
    trainer.add_policy(bid, trainer.create_policy(bid, _SPEC))
    assert isinstance(trainer.optimizer, _Recording)
    assert trainer.optimizer.policy is trainer.policy is trainer.get_policy("B")


def test_create_policy_reading_self_policy_is_named(tmp_path) -> None:
    class Eager(_Trainer):
        def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                          behavior_spec: BehaviorSpec) -> TorchPolicy:
            return self.policy

    with pytest.raises(TrainerNotReadyError, match="create_policy must not read self.policy"):
        Eager.build("B", _settings(4), _SPEC)


def test_build_gives_a_ready_trainer_that_checkpoints_under_artifact_path(tmp_path) -> None:
    reporter = StatsReporter("B", [])
    run = RunContext(artifact_path=str(tmp_path / "B"), seed=3, stats_reporter=reporter)
    trainer = _Trainer.build("B", _settings(4), _SPEC, run)
    assert isinstance(trainer, _Trainer)  # build is typed and made by the class it is called on
    assert isinstance(trainer.optimizer, _Recording)
    assert trainer.optimizer.policy is trainer.policy is trainer.get_policy("B")
    assert (trainer.seed, trainer.stats_reporter, trainer.is_training) == (3, reporter, True)
    assert trainer.save_model(4) == str(tmp_path / "B" / "B-4.pt")
    assert (tmp_path / "B" / "checkpoint.pt").is_file()
    resumed = _Trainer.build("B", _settings(4), _SPEC,
                             RunContext(artifact_path=str(tmp_path / "B"), resume=True))
    assert resumed.get_step == 4


def test_a_trainer_built_without_a_run_writes_no_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = _Trainer.build("B", _settings(4), _SPEC)
    assert trainer.artifact_path is None and trainer.save_model(4) is None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="artifact_path"):
        RunContext(artifact_path=None, resume=True)


def test_build_ends_with_the_accel_plan(tmp_path) -> None:
    prepared: List[object] = []

    class Plan:
        def prepare_trainer(self, trainer: _Trainer) -> None:
            prepared.append((trainer, trainer.optimizer))  # complete by then: no error

    run = RunContext(artifact_path=None, accel=Plan())
    trainer = _Trainer.build("B", _settings(4), _SPEC, run)
    assert prepared == [(trainer, trainer.optimizer)]


def test_an_update_that_changes_the_policy_tells_the_policy(tmp_path, monkeypatch) -> None:
    trainer = _make(_Trainer, tmp_path, 4)
    calls: List[bool] = []
    monkeypatch.setattr(trainer.policy, "weights_changed", lambda: calls.append(True))
    results = iter([False, True])
    monkeypatch.setattr(trainer, "_is_ready_update", lambda: True)
    monkeypatch.setattr(trainer, "_update_policy", lambda: next(results))
    trainer.advance()
    assert calls == [] and trainer.updates == 0
    trainer.advance()
    assert calls == [True] and trainer.updates == 1


def test_a_restore_tells_the_policy(tmp_path, monkeypatch) -> None:
    _make(_Trainer, tmp_path / "saved", 4).save_model(4)
    trainer = _make(_Trainer, tmp_path / "new", 4)
    calls: List[TorchPolicy] = []
    monkeypatch.setattr(TorchPolicy, "weights_changed", lambda self: calls.append(self))
    trainer._restore(str(tmp_path / "saved"), only_weights=True)
    assert calls == [trainer.policy]


@pytest.mark.parametrize("cls,normalized", [(_Trainer, True), (_RawTrainer, False)])
def test_normalize_advantages_class_attribute(tmp_path, cls: type, normalized: bool) -> None:
    raw = np.array([1.0, 2.0, 4.0, 9.0], np.float32)
    trainer = _make(cls, tmp_path, len(raw))
    buffer = AgentBuffer()
    buffer[BufferKey.ADVANTAGES] = raw
    trainer._append_to_update_buffer(buffer)
    assert trainer._update_policy()
    optimizer = trainer.optimizer
    assert isinstance(optimizer, _Recording)
    (seen,) = optimizer.seen
    expected = (raw - raw.mean()) / (raw.std() + 1e-10) if normalized else raw
    np.testing.assert_allclose(np.sort(seen), np.sort(expected), rtol=1e-6)


def test_post_init_may_always_call_super() -> None:
    class Plain(HyperparamSettings):
        def __post_init__(self) -> None:
            super().__post_init__()

    class OnPolicy(OnPolicyHyperparamSettings):
        def __post_init__(self) -> None:
            super().__post_init__()

    class OffPolicy(OffPolicyHyperparamSettings):
        def __post_init__(self) -> None:
            super().__post_init__()

    Plain()
    OnPolicy()
    # the base's own __post_init__ ran: the unset ratio follows steps_per_update
    assert OffPolicy(steps_per_update=4.0).reward_signal_steps_per_update == 4.0
