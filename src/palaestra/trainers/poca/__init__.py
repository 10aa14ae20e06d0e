"""MA-POCA (multi-agent posthumous credit assignment) as the built-in trainer type `poca`."""
from palaestra.trainers.poca.networks import (MultiAgentNetworkBody, POCAValueNetwork,
                                              ResidualSelfAttention)
from palaestra.trainers.poca.optimizer import TorchPOCAOptimizer
from palaestra.trainers.poca.settings import POCASettings
from palaestra.trainers.poca.trainer import POCATrainer, get_type_and_setting

__all__ = ["MultiAgentNetworkBody", "POCASettings", "POCATrainer", "POCAValueNetwork",
           "ResidualSelfAttention", "TorchPOCAOptimizer", "get_type_and_setting"]
