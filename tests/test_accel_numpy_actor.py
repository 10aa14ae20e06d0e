"""The NumPy acting path (palaestra.accel.numpy_actor) must agree with the torch actor it
mirrors, and re-read the weights when the policy is told they changed."""
import numpy as np
import pytest
import torch

from palaestra import (ActionSpec, AgentAction, AgentBuffer, BehaviorSpec, DecisionSteps,
                       NetworkSettings, ObservationSpec, SimpleActor, TorchPolicy, obs_key)
from palaestra.settings import Activation


def _policy(action_spec, normalize, activation, seed=3, sac_head=False):
    spec = BehaviorSpec([ObservationSpec((3,)), ObservationSpec((2,))], action_spec)
    ns = NetworkSettings(hidden_units=16, num_layers=2, normalize=normalize,
                         activation=activation)
    policy = TorchPolicy(seed, spec, ns, SimpleActor, {"conditional_sigma": sac_head,
                                                        "tanh_squash": sac_head})
    assert policy.act_with_numpy(True)
    return policy


@pytest.mark.parametrize("action_spec", [ActionSpec.create_continuous(2),
                                         ActionSpec.create_discrete((3, 2)),
                                         ActionSpec(2, (4,))])
@pytest.mark.parametrize("activation", list(Activation))
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("sac_head", [False, True], ids=["gaussian", "conditional-tanh"])
def test_numpy_log_probs_equal_torch_evaluation(action_spec, activation, normalize, sac_head):
    policy = _policy(action_spec, normalize, activation, sac_head=sac_head)
    if sac_head and action_spec.continuous_size:  # sigma depends on the observation (kept
        # small: a saturated tanh sample cannot be inverted exactly for the evaluation)
        with torch.no_grad():
            policy.actor.action_model.log_sigma_head.weight.normal_(0.0, 0.02)
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(6, 3)).astype(np.float32) * 4,
           rng.normal(size=(6, 2)).astype(np.float32)]
    if normalize:
        buf = AgentBuffer()
        buf[obs_key(0)] = obs[0] * 2 + 1
        buf[obs_key(1)] = obs[1] - 3
        policy.update_normalization(buf)
    mask = None
    if action_spec.discrete_size:
        mask = np.ones((6, sum(action_spec.discrete_branches)), bool)
        mask[:, 0] = False  # first action of the first branch forbidden
    info = policy.get_action(DecisionSteps(obs, np.zeros(6, np.float32), np.arange(6), mask))
    assert policy._numpy_actor is not None, "the NumPy path should serve this actor"
    if mask is not None:
        assert (info.action.discrete[:, 0] != 0).all()
    with torch.no_grad():
        stats = policy.actor.get_stats(
            [torch.from_numpy(o) for o in obs],
            AgentAction(torch.from_numpy(info.action.continuous),
                        torch.from_numpy(info.action.discrete)),
            None if mask is None else torch.from_numpy(mask))
    np.testing.assert_allclose(info.log_probs, stats["log_probs"].numpy(), rtol=1e-4, atol=1e-4)


def test_numpy_actor_follows_weight_updates_once_told():
    policy = _policy(ActionSpec.create_continuous(1), False, Activation.TANH)
    obs = [np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)]
    steps = DecisionSteps(obs, np.zeros(1, np.float32), np.arange(1))
    policy.actor.action_model.deterministic = True
    first = policy.get_action(steps).action.continuous.copy()  # builds the mirror
    with torch.no_grad():
        policy.actor.action_model.mu.bias.add_(5.0)  # an in-place update, like Adam's
    # the contract: the mirror reads weights only when told (no polling on every step)
    np.testing.assert_array_equal(policy.get_action(steps).action.continuous, first)
    policy.weights_changed()
    action = policy.get_action(steps).action.continuous
    with torch.no_grad():
        expected = policy.actor.action_model.mu(policy.actor.network_body(
            [torch.from_numpy(o) for o in obs])).numpy()
    np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-5)


def test_sampled_discrete_actions_follow_the_policy_distribution():
    policy = _policy(ActionSpec.create_discrete((3,)), False, Activation.SWISH)
    obs = [np.zeros((20000, 3), np.float32), np.zeros((20000, 2), np.float32)]
    info = policy.get_action(DecisionSteps(obs, np.zeros(20000, np.float32), np.arange(20000)))
    with torch.no_grad():
        logits = policy.actor.action_model.logits(policy.actor.network_body(
            [torch.from_numpy(o[:1]) for o in obs]))
    expected = torch.softmax(logits, -1).numpy()[0]
    counts = np.bincount(info.action.discrete[:, 0], minlength=3) / 20000
    np.testing.assert_allclose(counts, expected, atol=0.02)


def _assert_acts_with_current_weights(policy, steps, before):
    """The mirror's deterministic action moved from `before` to the torch actor's."""
    after = policy.get_action(steps).action.continuous
    with torch.no_grad():
        expected = policy.actor.action_model.mu(policy.actor.network_body(
            [torch.from_numpy(o) for o in steps.obs])).numpy()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("accelerated", [False, True])
def test_numpy_actor_follows_adam_steps(accelerated):
    """Regression: the mirror must see parameters changed by palaestra.Adam, on either path."""
    from palaestra import Adam

    policy = _policy(ActionSpec.create_continuous(1), False, Activation.TANH)
    policy.actor.action_model.deterministic = True
    obs = [np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)]
    steps = DecisionSteps(obs, np.zeros(1, np.float32), np.arange(1))
    before = policy.get_action(steps).action.continuous.copy()
    opt = Adam(policy.actor.parameters(), lr=0.1)
    opt.accelerate(accelerated)
    policy.actor.action_model.mu(policy.actor.network_body(
        [torch.from_numpy(o) for o in obs])).sum().backward()
    opt.step()
    policy.weights_changed()  # what the trainer does after every update
    _assert_acts_with_current_weights(policy, steps, before)


def test_normalizer_updates_reach_the_mirror():
    policy = _policy(ActionSpec.create_continuous(1), True, Activation.TANH)
    policy.actor.action_model.deterministic = True
    obs = [np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)]
    steps = DecisionSteps(obs, np.zeros(1, np.float32), np.arange(1))
    before = policy.get_action(steps).action.continuous.copy()
    buf = AgentBuffer()
    buf[obs_key(0)] = np.full((8, 3), 7.0, np.float32)
    buf[obs_key(1)] = np.full((8, 2), -4.0, np.float32)
    policy.update_normalization(buf)  # marks the mirror stale itself
    _assert_acts_with_current_weights(policy, steps, before)


def test_off_by_default_and_for_actors_it_does_not_cover():
    spec = BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_continuous(1))
    ns = NetworkSettings(hidden_units=8, num_layers=1)
    policy = TorchPolicy(0, spec, ns, SimpleActor, {})
    policy.get_action(DecisionSteps([np.ones((2, 3), np.float32)], np.zeros(2, np.float32),
                                    np.arange(2)))
    assert policy._numpy_actor is None

    class Custom(SimpleActor):  # a subclass may act otherwise: the mirror stays out
        pass

    assert not TorchPolicy(0, spec, ns, Custom, {}).act_with_numpy(True)


def test_acting_runs_blas_on_one_thread_and_leaves_the_process_setting_as_it_was():
    """Whatever the process's BLAS threads (a notebook nobody tuned), the mirror's small
    products run on one (many would spin for busy cores), and the setting is restored."""
    from threadpoolctl import threadpool_info, threadpool_limits

    class Recording:  # a BLAS library's controller that records what it was asked
        def __init__(self, threads):
            self.threads, self.seen = threads, []

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            self.seen.append(n)
            self.threads = n

    policy = _policy(ActionSpec.create_continuous(1), False, Activation.TANH)
    steps = DecisionSteps([np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)],
                          np.zeros(4, np.float32), np.arange(4))
    policy.get_action(steps)  # builds the mirror
    guard = policy._numpy_actor.one_blas_thread
    real = guard.libraries
    recording, tuned = Recording(4), Recording(1)
    guard.libraries = [recording, tuned]
    policy.get_action(steps)
    assert recording.seen == [1, 4] and recording.threads == 4
    assert tuned.seen == []  # a process already on one thread is left alone
    guard.libraries = real
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    if blas:  # the real library: the same number of threads after acting as before
        with threadpool_limits(2, user_api="blas"):
            before = [lib["num_threads"] for lib in threadpool_info()
                      if lib["user_api"] == "blas"]
            policy.get_action(steps)
            assert [lib["num_threads"] for lib in threadpool_info()
                    if lib["user_api"] == "blas"] == before
