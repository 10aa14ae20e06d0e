"""palaestra's built-in trainers, registered through the same entry-point group as plugins."""
from typing import Dict, Tuple


def get_default_trainer_types() -> Tuple[Dict[str, type], Dict[str, type]]:
    """Entry point ``default`` of ``palaestra.trainer_type``."""
    from palaestra.trainers.poca import POCASettings, POCATrainer
    from palaestra.trainers.ppo import PPOSettings, PPOTrainer
    from palaestra.trainers.sac import SACSettings, SACTrainer

    trainers = (PPOTrainer, SACTrainer, POCATrainer)
    settings = (PPOSettings, SACSettings, POCASettings)
    return ({t.get_trainer_name(): t for t in trainers},
            {t.get_trainer_name(): s for t, s in zip(trainers, settings)})
