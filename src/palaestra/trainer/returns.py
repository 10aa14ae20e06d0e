"""Discounted returns and GAE(lambda) (Schulman et al. 2016, eq. 16).

`compute_gae` works on (time, env) arrays in one backward pass vectorised over environments, and
handles episodes that end inside the window: `terminated` zeroes the bootstrap (a real end),
`episode_end` stops the recursion (any end, truncation included, whose bootstrap value then
comes from `next_values`). `get_gae` / `discount_rewards` are the one-trajectory forms that
trainers call from `_process_trajectory`.
"""
from __future__ import annotations

import numpy as np


def compute_gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
                terminated: np.ndarray, episode_end: np.ndarray, gamma: float,
                lambd: float) -> np.ndarray:
    """Advantages, shape (T, N) (or (T,)): delta_t + gamma*lambda*(1-end_t)*A_{t+1}."""
    rewards = np.asarray(rewards, np.float64)
    not_term = 1.0 - np.asarray(terminated, np.float64)
    deltas = rewards + gamma * np.asarray(next_values, np.float64) * not_term - values
    carry = gamma * lambd * (1.0 - np.asarray(episode_end, np.float64))
    if deltas.ndim == 1:  # one trajectory: Python floats beat (1,)-shaped numpy ops 10x
        out, running = [0.0] * len(deltas), 0.0
        for t, (d, c) in enumerate(zip(deltas[::-1].tolist(), carry[::-1].tolist())):
            running = d + c * running
            out[t] = running
        return np.asarray(out[::-1], np.float32)
    adv = np.empty_like(deltas)
    last = np.zeros(deltas.shape[1:])
    for t in range(len(deltas) - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        adv[t] = last
    return adv.astype(np.float32)


def trajectories_gae(rewards: np.ndarray, values: np.ndarray, value_next: np.ndarray,
                     ends: np.ndarray, gamma: float, lambd: float) -> np.ndarray:
    """GAE of K trajectories laid end to end in one buffer (N rows; `ends` (K,) the row of
    each one's last step): inside a trajectory a step bootstraps from the next row's value, a
    trajectory's last step from `value_next` (K,), the value after it (0 where its episode
    really ended), and the recursion stops at every trajectory's end."""
    n = len(values)
    next_values = np.empty(n)
    next_values[:-1] = values[1:]
    next_values[ends] = value_next
    episode_end = np.zeros(n)
    episode_end[ends] = 1.0
    return compute_gae(rewards, values, next_values, np.zeros(n), episode_end, gamma, lambd)


def get_gae(rewards: np.ndarray, value_estimates: np.ndarray, value_next: float = 0.0,
            gamma: float = 0.99, lambd: float = 0.95) -> np.ndarray:
    """GAE of one trajectory whose steps are all of one episode; `value_next` is the value of
    the observation after the last step (0 after a real termination)."""
    n = len(rewards)
    next_values = np.append(np.asarray(value_estimates, np.float64)[1:], value_next)
    no_end = np.zeros(n)
    return compute_gae(rewards, value_estimates, next_values, no_end, no_end, gamma, lambd)


def discount_rewards(rewards: np.ndarray, gamma: float = 0.99, value_next: float = 0.0
                     ) -> np.ndarray:
    """Discounted sum of rewards, bootstrapped with `value_next` after the last step."""
    out = np.empty(len(rewards), np.float64)
    running = float(value_next)
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out.astype(np.float32)
