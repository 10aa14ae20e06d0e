"""POCA's hyperparameters: ML-Agents' `POCASettings`, field for field, default for default."""
from palaestra import MAX_EPOCHS, OnPolicyHyperparamSettings, ScheduleType, setting


class POCASettings(OnPolicyHyperparamSettings):
    beta: float = setting(5.0e-3, "Entropy bonus coefficient.", ge=0.0)
    epsilon: float = setting(0.2, "Clip range of the policy ratio and of the value changes.",
                             gt=0.0)
    lambd: float = setting(0.95, "Lambda of the lambda-returns of value and baseline.",
                           ge=0.0, le=1.0)
    num_epoch: int = setting(3, "Passes over the update buffer per update.", ge=1,
                             le=MAX_EPOCHS)
    learning_rate_schedule: ScheduleType = setting(ScheduleType.LINEAR,
                                                   "constant, or linear decay to max_steps.")
    beta_schedule: ScheduleType = setting(ScheduleType.LINEAR, "Schedule of beta.")
    epsilon_schedule: ScheduleType = setting(ScheduleType.LINEAR, "Schedule of epsilon.")
