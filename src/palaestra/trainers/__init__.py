"""palaestra's built-in trainers, registered through the same entry-point group as plugins."""
from typing import Dict, Tuple


def get_default_trainer_types() -> Tuple[Dict[str, type], Dict[str, type]]:
    """Entry point ``default`` of ``palaestra.trainer_type``."""
    from palaestra.trainers.ppo import PPOSettings, PPOTrainer

    return {PPOTrainer.get_trainer_name(): PPOTrainer}, {PPOTrainer.get_trainer_name(): PPOSettings}
