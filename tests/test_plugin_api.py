"""Promises of docs/plugin-api.md that no other test holds: PPO's names at the top level, the
trainer's policy / optimizer before `add_policy`, opting out of advantage normalisation, and
`super().__post_init__()` in settings."""
from typing import Dict, List

import numpy as np
import pytest

import palaestra
from palaestra import (ActionSpec, AgentBuffer, BehaviorIdentifiers, BehaviorSpec, BufferKey,
                       HyperparamSettings, NetworkSettings, ObservationSpec,
                       OffPolicyHyperparamSettings, OnPolicyHyperparamSettings, OnPolicyTrainer,
                       PalaestraError, TorchOptimizer, TorchPolicy, TrainerNotReadyError,
                       TrainerSettings)


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


def _make(cls: type, tmp_path: object, n: int) -> _Trainer:
    hp = OnPolicyHyperparamSettings(batch_size=n, buffer_size=n, num_epoch=1)
    settings = TrainerSettings(trainer_type="x", hyperparameters=hp,
                               network_settings=NetworkSettings(hidden_units=4, num_layers=1))
    trainer: _Trainer = cls("B", 1, settings, True, False, 0, str(tmp_path))
    return trainer


def _add_policy(trainer: _Trainer) -> None:
    bid = BehaviorIdentifiers.from_name_behavior_id("B")
    spec = BehaviorSpec([ObservationSpec((2,))], ActionSpec.create_discrete((2,)))
    trainer.add_policy(bid, trainer.create_policy(bid, spec))


def test_policy_and_optimizer_before_add_policy_raise_a_palaestra_error(tmp_path) -> None:
    trainer = _make(_Trainer, tmp_path, 4)
    with pytest.raises(TrainerNotReadyError, match="add_policy"):
        trainer.policy
    with pytest.raises(PalaestraError, match="add_policy"):
        trainer.optimizer
    _add_policy(trainer)
    assert isinstance(trainer.optimizer, _Recording)
    assert trainer.optimizer.policy is trainer.policy is trainer.get_policy("B")


@pytest.mark.parametrize("cls,normalized", [(_Trainer, True), (_RawTrainer, False)])
def test_normalize_advantages_class_attribute(tmp_path, cls: type, normalized: bool) -> None:
    raw = np.array([1.0, 2.0, 4.0, 9.0], np.float32)
    trainer = _make(cls, tmp_path, len(raw))
    _add_policy(trainer)
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
