"""palaestra: a reinforcement-learning training framework whose trainers are plugins.

Everything a trainer plugin needs is importable from here; `docs/plugin-api.md` documents it.
palaestra's own trainers (`palaestra.trainers`) use nothing else.
"""
from typing import TYPE_CHECKING, Any

from palaestra.buffer import (AgentBuffer, BufferKey, ObservationKeyPrefix, ReplayBuffer,
                              RewardSignalKeyPrefix, advantage_key, baselines_key, group_obs_key,
                              next_obs_key, obs_key, returns_key, rewards_key,
                              value_estimates_key)
from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationKind, ObservationSpec, TerminalSteps)
from palaestra.exception import (CheckpointError, EnvironmentSetupError, PalaestraError,
                                 TrainerConfigError, TrainerNotReadyError)
from palaestra.model_utils import DecayedValue, ModelUtils
from palaestra.optim import Adam
from palaestra.networks import (ActionModel, AgentAction, NetworkBody, SharedActorCritic,
                                SimpleActor, ValueNetwork, obs_tensors)
from palaestra.optimizer import RewardSignal, TorchOptimizer
from palaestra.policy import ActionInfo, TorchPolicy
from palaestra.settings import (EncoderType, HyperparamSettings, NetworkSettings,
                                OffPolicyHyperparamSettings, OnPolicyHyperparamSettings,
                                RewardSignalSettings, RewardSignalType, ScheduleType, Settings,
                                TrainerSettings, setting)
from palaestra.stats import StatsReporter, StatsSummary, StatsWriter
from palaestra.trainer import (BehaviorIdentifiers, OffPolicyTrainer, OnPolicyTrainer, RLTrainer,
                               compute_gae, discount_rewards, get_gae)
from palaestra.trajectory import AgentExperience, Trajectory
import palaestra.envs.builtin  # noqa: E402,F401  (registers the palaestra/<Name>-v0 Gymnasium ids)

if TYPE_CHECKING:
    from palaestra.trainers.ppo import PPOSettings, PPOTrainer, TorchPPOOptimizer
else:
    _PPO_NAMES = ("PPOSettings", "PPOTrainer", "TorchPPOOptimizer")

    def __getattr__(name: str) -> Any:
        """PPO's names, imported on first use: `palaestra.trainers.ppo` is written against this
        module's names (`from palaestra import ...`), so importing it above, before they are all
        bound, would make the two modules import each other."""
        if name in _PPO_NAMES:
            from palaestra.trainers import ppo

            value = getattr(ppo, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "ActionInfo", "ActionModel", "Adam", "ActionSpec", "ActionTuple", "AgentAction", "AgentBuffer",
    "AgentExperience", "BaseEnv", "BehaviorIdentifiers", "BehaviorSpec", "BufferKey",
    "CheckpointError", "DecayedValue", "DecisionSteps", "EncoderType", "EnvironmentSetupError",
    "HyperparamSettings", "ModelUtils", "NetworkBody", "NetworkSettings", "ObservationKeyPrefix",
    "ObservationKind", "ObservationSpec", "OffPolicyHyperparamSettings", "OffPolicyTrainer",
    "OnPolicyHyperparamSettings", "OnPolicyTrainer", "PPOSettings", "PPOTrainer", "PalaestraError",
    "RLTrainer", "ReplayBuffer", "RewardSignal", "RewardSignalKeyPrefix", "RewardSignalSettings",
    "RewardSignalType", "ScheduleType", "Settings", "SharedActorCritic", "SimpleActor",
    "StatsReporter", "StatsSummary", "StatsWriter", "TerminalSteps", "TorchOptimizer",
    "TorchPPOOptimizer", "TorchPolicy", "TrainerConfigError", "TrainerNotReadyError",
    "TrainerSettings", "Trajectory", "ValueNetwork", "advantage_key", "baselines_key",
    "compute_gae", "discount_rewards", "get_gae", "group_obs_key", "next_obs_key", "obs_key",
    "obs_tensors", "returns_key", "rewards_key", "setting", "value_estimates_key", "__version__",
]
