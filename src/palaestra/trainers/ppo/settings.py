"""PPO's hyperparameters: the specification's `PPOSettings`, with ML-Agents' defaults."""
from typing import Optional

from palaestra import MAX_EPOCHS, OnPolicyHyperparamSettings, ScheduleType, setting


class PPOSettings(OnPolicyHyperparamSettings):
    beta: float = setting(5.0e-3, "Entropy bonus coefficient.", ge=0.0)
    epsilon: float = setting(0.2, "Clip range of the policy ratio and of the value change.",
                             gt=0.0)
    lambd: float = setting(0.95, "GAE lambda.", ge=0.0, le=1.0)
    num_epoch: int = setting(3, "Passes over the update buffer per update.", ge=1,
                             le=MAX_EPOCHS)
    shared_critic: bool = setting(False, "Actor and critic share one network body.")
    learning_rate_schedule: ScheduleType = setting(ScheduleType.LINEAR,
                                                   "constant, or linear decay to max_steps.")
    beta_schedule: Optional[ScheduleType] = setting(
        None, "Schedule of beta; defaults to learning_rate_schedule.")
    epsilon_schedule: Optional[ScheduleType] = setting(
        None, "Schedule of epsilon; defaults to learning_rate_schedule.")
    value_clipping: bool = setting(
        False, "Clip the value loss to epsilon around the old value as ML-Agents does "
               "(palaestra extension; off by default, see docs/configuration.md).")
    max_grad_norm: Optional[float] = setting(
        None, "Clip the gradient norm (palaestra extension; ML-Agents does not clip).", gt=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta_schedule is None:
            self.beta_schedule = self.learning_rate_schedule
        if self.epsilon_schedule is None:
            self.epsilon_schedule = self.learning_rate_schedule
