"""The trainer contract (RLTrainer -> OnPolicyTrainer / OffPolicyTrainer) and shared helpers."""
from palaestra.trainer.off_policy_trainer import OffPolicyTrainer
from palaestra.trainer.on_policy_trainer import OnPolicyTrainer
from palaestra.trainer.returns import compute_gae, discount_rewards, get_gae, trajectories_gae
from palaestra.trainer.rl_trainer import BehaviorIdentifiers, RLTrainer
from palaestra.trainer.run_context import RunContext

__all__ = ["BehaviorIdentifiers", "OffPolicyTrainer", "OnPolicyTrainer", "RLTrainer",
           "RunContext", "compute_gae", "discount_rewards", "get_gae", "trajectories_gae"]
