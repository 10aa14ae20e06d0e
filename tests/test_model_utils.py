"""ModelUtils' losses and schedules against hand-computed values."""
import math

import pytest
import torch

from palaestra import Adam, DecayedValue, ModelUtils, ScheduleType


def test_trust_region_policy_loss_clips_the_ratio():
    adv = torch.tensor([1.0, -1.0, 2.0])
    old = torch.zeros(3)
    # ratios e^0.5 = 1.65 (clipped to 1.2 for a positive advantage), e^-0.5 = 0.61 (clipped to
    # 0.8 for a negative advantage: min(-0.61, -0.8) = -0.8), and 1.0
    new = torch.tensor([0.5, -0.5, 0.0])
    loss = ModelUtils.trust_region_policy_loss(adv, new, old, None, 0.2)
    expected = -(1.2 * 1.0 + (-0.8) + 2.0 * 1.0) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    masked = ModelUtils.trust_region_policy_loss(adv, new, old, torch.tensor([1.0, 0.0, 0.0]),
                                                 0.2)
    assert masked.item() == pytest.approx(-1.2, rel=1e-6)


def test_trust_region_value_loss_takes_the_worse_of_clipped_and_unclipped():
    values = {"extrinsic": torch.tensor([1.0, 0.0])}
    old = {"extrinsic": torch.tensor([0.0, 0.0])}
    returns = {"extrinsic": torch.tensor([2.0, 0.5])}
    loss = ModelUtils.trust_region_value_loss(values, old, returns, 0.2, None)
    # row 0: unclipped (2-1)^2 = 1, clipped (2-0.2)^2 = 3.24 -> 3.24; row 1: 0.25 both ways
    assert loss.item() == pytest.approx((3.24 + 0.25) / 2, rel=1e-6)


def test_masked_mean_ignores_padding_and_handles_none():
    x = torch.tensor([1.0, 2.0, 100.0])
    assert ModelUtils.masked_mean(x, torch.tensor([1.0, 1.0, 0.0])).item() == 1.5
    assert ModelUtils.masked_mean(x, None).item() == pytest.approx(103 / 3)
    assert ModelUtils.masked_mean(x, torch.zeros(3)).item() == 0.0


def test_decayed_values_and_learning_rate_update():
    linear = DecayedValue(ScheduleType.LINEAR, 1.0, 0.1, 100)
    assert linear.get_value(0) == 1.0
    assert linear.get_value(50) == pytest.approx(0.55)
    assert linear.get_value(100) == pytest.approx(0.1)
    assert linear.get_value(1000) == pytest.approx(0.1)  # held at the floor past max_step
    assert DecayedValue(ScheduleType.CONSTANT, 0.3, 0.0, 100).get_value(99) == 0.3
    opt = Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ModelUtils.update_learning_rate(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25
    assert not math.isnan(ModelUtils.polynomial_decay(1.0, 0.0, 0, 5))


def test_soft_update_moves_parameters_by_tau_and_copies_buffers():
    from palaestra.networks.encoders import Normalizer

    torch.manual_seed(0)
    source = torch.nn.Sequential(Normalizer(3), torch.nn.Linear(3, 2))
    target = torch.nn.Sequential(Normalizer(3), torch.nn.Linear(3, 2))
    source[0].update(torch.randn(10, 3))
    before = [p.clone() for p in target.parameters()]
    ModelUtils.soft_update(source, target, 0.1)
    for t, b, s in zip(target.parameters(), before, source.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    torch.testing.assert_close(target[0].mean, source[0].mean)
    ModelUtils.soft_update(source, target, 1.0)
    assert all(torch.equal(t, s) for t, s in zip(target.parameters(), source.parameters()))
    with pytest.raises(ValueError, match="same architecture"):
        ModelUtils.soft_update(source, torch.nn.Linear(3, 3), 0.5)
