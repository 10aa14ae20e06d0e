"""Advantage actor-critic (Mnih et al. 2016, synchronous form) as trainer type `a2c`."""
from palaestra_trainer_plugin.a2c.optimizer import A2COptimizer
from palaestra_trainer_plugin.a2c.settings import A2CSettings
from palaestra_trainer_plugin.a2c.trainer import A2CTrainer, get_type_and_setting

__all__ = ["A2COptimizer", "A2CSettings", "A2CTrainer", "get_type_and_setting"]
