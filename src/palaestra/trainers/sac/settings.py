"""SAC's hyperparameters: the fields and defaults of ML-Agents' `SACSettings`."""
from palaestra import OffPolicyHyperparamSettings, ScheduleType, setting


class SACSettings(OffPolicyHyperparamSettings):
    tau: float = setting(0.005, "Each gradient step moves the target critics this far towards "
                                "the critics.", gt=0.0, le=1.0)
    init_entcoef: float = setting(1.0, "Initial entropy coefficient (alpha); tuned "
                                       "automatically from there.", gt=0.0)
    learning_rate_schedule: ScheduleType = setting(ScheduleType.CONSTANT,
                                                   "constant, or linear decay to max_steps.")
