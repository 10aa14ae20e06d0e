"""palaestra: a reinforcement-learning training framework whose trainers are plugins.

Everything a trainer plugin needs is importable from here; `docs/plugin-api.md` documents it.
palaestra's own trainers (`palaestra.trainers`) use nothing else.
"""
import importlib
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

import palaestra.envs.builtin  # noqa: F401  (registers the palaestra/<Name>-v0 Gymnasium ids)

# Every public name, by the module that defines it. They are imported on first use (PEP 562):
# `import palaestra` (and the `palaestra` command, before it can handle Ctrl-C) does not pay
# for torch until something needs it, and `palaestra.trainers.ppo`, written against these
# names, can import them without the two modules importing each other.
_PUBLIC: Dict[str, Tuple[str, ...]] = {
    "palaestra.accel": (
        "Accel",),
    "palaestra.api": (
        "RunResult", "learn"),
    "palaestra.buffer": (
        "AgentBuffer", "BufferKey", "ObservationKeyPrefix", "ReplayBuffer", "RewardSignalKeyPrefix",
        "advantage_key", "baselines_key", "group_obs_key", "next_obs_key", "obs_key", "returns_key",
        "rewards_key", "value_estimates_key"),
    "palaestra.envs.base": (
        "ActionSpec", "ActionTuple", "BaseEnv", "BehaviorSpec", "DecisionSteps", "ObservationKind",
        "ObservationSpec", "TerminalSteps"),
    "palaestra.exception": (
        "CheckpointError", "EnvironmentSetupError", "PalaestraError", "TrainerConfigError",
        "TrainerNotReadyError"),
    "palaestra.inference": (
        "LoadedPolicy", "load_policy"),
    "palaestra.model_utils": (
        "DecayedValue", "ModelUtils"),
    "palaestra.optim": (
        "Adam",),
    "palaestra.networks": (
        "ActionModel", "AgentAction", "NetworkBody", "ObservationEncoder", "SharedActorCritic",
        "SimpleActor", "ValueNetwork", "activation", "obs_tensors"),
    "palaestra.optimizer": (
        "TorchOptimizer",),
    "palaestra.reward_signals": (
        "ExtrinsicRewardSignal", "RewardSignal", "RewardSignalRegistry", "flat_actions"),
    "palaestra.demo": (
        "Demonstrations", "Episode", "load_demonstrations", "write_demonstration"),
    "palaestra.policy": (
        "ActionInfo", "TorchPolicy"),
    "palaestra.settings": (
        "Activation", "EncoderType", "HyperparamSettings", "MAX_EPOCHS", "NetworkSettings", "OffPolicyHyperparamSettings",
        "OnPolicyHyperparamSettings", "RewardSignalSettings", "RewardSignalType", "ScheduleType",
        "Settings", "TrainerSettings", "setting", "BehavioralCloningSettings",
        "CuriositySettings", "GAILSettings", "RNDSettings"),
    "palaestra.stats": (
        "StatsReporter", "StatsSummary", "StatsWriter"),
    "palaestra.trainer": (
        "BehaviorIdentifiers", "OffPolicyTrainer", "OnPolicyTrainer", "RLTrainer", "RunContext",
        "compute_gae", "discount_rewards", "get_gae", "trajectories_gae"),
    "palaestra.trajectory": (
        "AgentExperience", "Trajectory", "pad_teammates"),
    "palaestra.trainers.ppo": (
        "PPOSettings", "PPOTrainer", "TorchPPOOptimizer"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

if TYPE_CHECKING:
    from palaestra.accel import Accel
    from palaestra.api import RunResult, learn
    from palaestra.buffer import (AgentBuffer, BufferKey, ObservationKeyPrefix, ReplayBuffer,
                                  RewardSignalKeyPrefix, advantage_key, baselines_key,
                                  group_obs_key, next_obs_key, obs_key, returns_key, rewards_key,
                                  value_estimates_key)
    from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                     ObservationKind, ObservationSpec, TerminalSteps)
    from palaestra.exception import (CheckpointError, EnvironmentSetupError, PalaestraError,
                                     TrainerConfigError, TrainerNotReadyError)
    from palaestra.inference import LoadedPolicy, load_policy
    from palaestra.model_utils import DecayedValue, ModelUtils
    from palaestra.optim import Adam
    from palaestra.networks import (ActionModel, AgentAction, NetworkBody, ObservationEncoder,
                                    SharedActorCritic, SimpleActor, ValueNetwork, activation,
                                    obs_tensors)
    from palaestra.demo import Demonstrations, Episode, load_demonstrations, write_demonstration
    from palaestra.optimizer import TorchOptimizer
    from palaestra.reward_signals import (ExtrinsicRewardSignal, RewardSignal,
                                          RewardSignalRegistry, flat_actions)
    from palaestra.policy import ActionInfo, TorchPolicy
    from palaestra.settings import (MAX_EPOCHS, Activation, BehavioralCloningSettings,
                                    CuriositySettings, EncoderType, GAILSettings,
                                    HyperparamSettings, NetworkSettings, RNDSettings,
                                    OffPolicyHyperparamSettings, OnPolicyHyperparamSettings,
                                    RewardSignalSettings, RewardSignalType, ScheduleType, Settings,
                                    TrainerSettings, setting)
    from palaestra.stats import StatsReporter, StatsSummary, StatsWriter
    from palaestra.trainer import (BehaviorIdentifiers, OffPolicyTrainer, OnPolicyTrainer,
                                   RLTrainer, RunContext, compute_gae, discount_rewards,
                                   get_gae, trajectories_gae)
    from palaestra.trajectory import AgentExperience, Trajectory, pad_teammates
    from palaestra.trainers.ppo import PPOSettings, PPOTrainer, TorchPPOOptimizer
else:
    def __getattr__(name: str) -> Any:
        if name in _MODULE_OF:
            value = getattr(importlib.import_module(_MODULE_OF[name]), name)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted({*globals(), *_MODULE_OF})


__version__ = "0.1.0"

__all__ = [
    "Accel", "Activation", "ExtrinsicRewardSignal", "MAX_EPOCHS", "ObservationEncoder",
    "RunResult", "activation", "learn", "pad_teammates", "LoadedPolicy", "load_policy",
    "ActionInfo", "ActionModel", "Adam", "ActionSpec", "ActionTuple", "AgentAction", "AgentBuffer",
    "AgentExperience", "BaseEnv", "BehaviorIdentifiers", "BehaviorSpec", "BufferKey",
    "CheckpointError", "DecayedValue", "DecisionSteps", "EncoderType", "EnvironmentSetupError",
    "HyperparamSettings", "ModelUtils", "NetworkBody", "NetworkSettings", "ObservationKeyPrefix",
    "ObservationKind", "ObservationSpec", "OffPolicyHyperparamSettings", "OffPolicyTrainer",
    "OnPolicyHyperparamSettings", "OnPolicyTrainer", "PPOSettings", "PPOTrainer", "PalaestraError",
    "RLTrainer", "ReplayBuffer", "RewardSignal", "RewardSignalKeyPrefix", "RewardSignalSettings",
    "RewardSignalType", "RunContext", "ScheduleType", "Settings", "SharedActorCritic",
    "SimpleActor", "StatsReporter", "StatsSummary", "StatsWriter", "TerminalSteps",
    "TorchOptimizer", "TorchPPOOptimizer", "TorchPolicy", "TrainerConfigError",
    "TrainerNotReadyError", "TrainerSettings", "Trajectory", "ValueNetwork", "advantage_key",
    "baselines_key", "compute_gae", "discount_rewards", "get_gae", "group_obs_key", "next_obs_key",
    "obs_key", "obs_tensors", "returns_key", "rewards_key", "setting", "trajectories_gae",
    "value_estimates_key", "__version__", "RewardSignalRegistry", "flat_actions",
    "Demonstrations", "Episode", "load_demonstrations", "write_demonstration",
    "BehavioralCloningSettings", "CuriositySettings", "GAILSettings", "RNDSettings",
]
