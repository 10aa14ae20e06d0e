"""Soft actor-critic as the built-in trainer type `sac`."""
from palaestra.trainers.sac.optimizer import TorchSACOptimizer
from palaestra.trainers.sac.settings import SACSettings
from palaestra.trainers.sac.trainer import SACTrainer, get_type_and_setting

__all__ = ["SACSettings", "SACTrainer", "TorchSACOptimizer", "get_type_and_setting"]
