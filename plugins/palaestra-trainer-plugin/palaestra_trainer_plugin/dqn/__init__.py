"""Deep Q-learning (Mnih et al. 2015; double DQN, van Hasselt et al. 2016) as trainer type
`dqn`: discrete actions only."""
from palaestra_trainer_plugin.dqn.network import QNetwork
from palaestra_trainer_plugin.dqn.optimizer import DQNOptimizer
from palaestra_trainer_plugin.dqn.settings import DQNSettings
from palaestra_trainer_plugin.dqn.trainer import DQNTrainer, get_type_and_setting

__all__ = ["DQNOptimizer", "DQNSettings", "DQNTrainer", "QNetwork", "get_type_and_setting"]
