"""Proximal Policy Optimization (Schulman et al. 2017) as the built-in trainer type `ppo`."""
from palaestra.trainers.ppo.optimizer import TorchPPOOptimizer
from palaestra.trainers.ppo.settings import PPOSettings
from palaestra.trainers.ppo.trainer import PPOTrainer, get_type_and_setting

__all__ = ["PPOSettings", "PPOTrainer", "TorchPPOOptimizer", "get_type_and_setting"]
