"""Torch networks: encoders, action heads, actors and critics."""
from palaestra.networks.distributions import ActionModel, AgentAction
from palaestra.networks.encoders import Normalizer, ObservationEncoder, activation
from palaestra.networks.networks import (NetworkBody, SharedActorCritic, SimpleActor,
                                         ValueNetwork, obs_tensors)

__all__ = ["ActionModel", "AgentAction", "Normalizer", "ObservationEncoder", "NetworkBody",
           "activation",
           "SharedActorCritic", "SimpleActor", "ValueNetwork", "obs_tensors"]
