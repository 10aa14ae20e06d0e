"""A2C's hyperparameters (the fields and defaults of ML-Agents' A2C plugin)."""
from typing import Optional

from palaestra import OnPolicyHyperparamSettings, ScheduleType, setting


class A2CSettings(OnPolicyHyperparamSettings):
    beta: float = setting(5.0e-3, "Entropy bonus coefficient.", ge=0.0)
    lambd: float = setting(0.95, "GAE lambda (1 gives n-step returns to the cut).", ge=0.0,
                           le=1.0)
    num_epoch: int = setting(1, "Passes over the update buffer per update.", ge=1)
    shared_critic: bool = setting(False, "Actor and critic share one network body.")
    learning_rate_schedule: ScheduleType = setting(ScheduleType.LINEAR,
                                                   "constant, or linear decay to max_steps.")
    beta_schedule: Optional[ScheduleType] = setting(
        None, "Schedule of beta; defaults to learning_rate_schedule.")
    max_grad_norm: Optional[float] = setting(0.5, "Clip the gradient norm.", gt=0.0)
    normalize_advantage: bool = setting(
        True, "Standardise the advantages over each update buffer; false: raw GAE advantages.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta_schedule is None:
            self.beta_schedule = self.learning_rate_schedule
