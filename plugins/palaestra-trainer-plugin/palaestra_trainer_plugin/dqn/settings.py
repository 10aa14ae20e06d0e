"""DQN's hyperparameters: the fields and defaults of ML-Agents' DQN plugin, plus what it left
implicit (how long epsilon decays, double DQN, gradient clipping)."""
from typing import Optional

from palaestra import OffPolicyHyperparamSettings, ScheduleType, setting


class DQNSettings(OffPolicyHyperparamSettings):
    gamma: float = setting(0.99, "Accepted for ML-Agents configs and unused, as in ML-Agents' "
                                 "plugin: the TD target of each reward signal uses that "
                                 "signal's gamma.", ge=0.0, le=1.0)
    exploration_schedule: ScheduleType = setting(
        ScheduleType.LINEAR, "Epsilon decays linearly to exploration_final_eps, or stays "
                             "constant.")
    exploration_initial_eps: float = setting(0.1, "Epsilon at the start.", ge=0.0, le=1.0)
    exploration_final_eps: float = setting(0.05, "Epsilon after exploration_steps.", ge=0.0,
                                           le=1.0)
    exploration_steps: int = setting(
        20000, "Agent steps over which epsilon decays (ML-Agents' plugin hard-codes 20000).",
        ge=1)
    target_update_interval: int = setting(
        1, "Gradient steps between target-network updates. ML-Agents' plugin declares 10000 "
           "but never reads it: its target follows after every step, as 1 does here.", ge=1)
    tau: float = setting(0.005, "Each target update moves the target this far towards the "
                                "online network (1 = copy).", gt=0.0, le=1.0)
    double_dqn: bool = setting(True, "Choose the bootstrap action with the online network and "
                                     "value it with the target (van Hasselt et al. 2016).")
    max_grad_norm: Optional[float] = setting(None, "Clip the gradient norm (null: no clip).",
                                             gt=0.0)
