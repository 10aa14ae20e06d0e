"""GAE and discounted returns against slow references and hand-computed values."""
import itertools

import numpy as np
import pytest

from palaestra import compute_gae, discount_rewards, get_gae


def slow_gae(rewards, values, next_values, terminated, episode_end, gamma, lambd):
    """Textbook per-element recursion over (T, N)."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            boot = 0.0 if terminated[t, n] else next_values[t, n]
            delta = rewards[t, n] + gamma * boot - values[t, n]
            running = delta + gamma * lambd * (0.0 if episode_end[t, n] else running)
            adv[t, n] = running
    return adv


@pytest.mark.parametrize("gamma,lambd,T,N", list(itertools.product(
    [0.0, 0.9, 0.99, 1.0], [0.0, 0.5, 0.95, 1.0], [1, 7, 64], [1, 5])))
def test_compute_gae_matches_reference(gamma, lambd, T, N):
    rng = np.random.default_rng(T * 100 + N)
    rewards = rng.normal(size=(T, N))
    values = rng.normal(size=(T, N))
    next_values = rng.normal(size=(T, N))
    episode_end = rng.random((T, N)) < 0.2
    # a truncation ends the episode without terminating it
    terminated = episode_end & (rng.random((T, N)) < 0.5)
    fast = compute_gae(rewards, values, next_values, terminated, episode_end, gamma, lambd)
    slow = slow_gae(rewards, values, next_values, terminated, episode_end, gamma, lambd)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    one = compute_gae(rewards[:, 0], values[:, 0], next_values[:, 0], terminated[:, 0],
                      episode_end[:, 0], gamma, lambd)
    np.testing.assert_allclose(one, slow[:, 0], rtol=1e-5, atol=1e-5)


def test_gae_analytic_case():
    # rewards 1, values 0, gamma 0.5, lambda 1: advantages are discounted returns
    adv = get_gae(np.ones(3), np.zeros(3), value_next=0.0, gamma=0.5, lambd=1.0)
    np.testing.assert_allclose(adv, [1.75, 1.5, 1.0])
    # bootstrap: value_next 8 adds 8 * 0.5^(3-t)
    adv = get_gae(np.ones(3), np.zeros(3), value_next=8.0, gamma=0.5, lambd=1.0)
    np.testing.assert_allclose(adv, [2.75, 3.5, 5.0])
    # lambda 0: one-step TD errors
    adv = get_gae(np.array([1.0, 2.0]), np.array([0.5, 1.0]), value_next=2.0, gamma=0.5, lambd=0.0)
    np.testing.assert_allclose(adv, [1.0 + 0.5 * 1.0 - 0.5, 2.0 + 0.5 * 2.0 - 1.0])


def test_gae_with_lambda_one_equals_discounted_return_minus_value():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=20), rng.normal(size=20)
    adv = get_gae(r, v, value_next=1.5, gamma=0.97, lambd=1.0)
    np.testing.assert_allclose(adv + v, discount_rewards(r, 0.97, 1.5), rtol=1e-5, atol=1e-5)


def test_discount_rewards():
    np.testing.assert_allclose(discount_rewards(np.array([1.0, 1.0, 1.0]), 0.5, 0.0),
                               [1.75, 1.5, 1.0])
    np.testing.assert_allclose(discount_rewards(np.array([0.0]), 0.9, 10.0), [9.0])


def test_trajectories_gae_equals_get_gae_of_each_trajectory():
    """Trajectories laid end to end: each one's advantages as if computed alone."""
    from palaestra import trajectories_gae
    rng = np.random.default_rng(0)
    lengths = [5, 1, 7, 3]
    rewards = [rng.normal(size=n) for n in lengths]
    values = [rng.normal(size=n) for n in lengths]
    value_next = np.array([0.4, 0.0, -1.2, 2.0])
    ends = np.cumsum(lengths) - 1
    joined = trajectories_gae(np.concatenate(rewards), np.concatenate(values), value_next, ends,
                              0.9, 0.8)
    alone = np.concatenate([get_gae(r, v, b, 0.9, 0.8)
                            for r, v, b in zip(rewards, values, value_next)])
    np.testing.assert_allclose(joined, alone, rtol=1e-6, atol=1e-6)
