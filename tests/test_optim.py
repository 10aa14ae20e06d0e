"""palaestra.Adam must follow torch.optim.Adam step for step, whichever path steps it: plain
(torch.optim.Adam itself), or accelerated (palaestra.accel.flat_adam) with torch's fused kernel
or the five-op fallback of builds without it."""
import functools

import pytest
import torch

import palaestra


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _accelerated(fused, *args, **kwargs):
    opt = palaestra.Adam(*args, **kwargs)
    opt.accelerate(True, fused=fused)
    return opt


PATHS = {"plain": palaestra.Adam, "fused": functools.partial(_accelerated, True),
         "five-op": functools.partial(_accelerated, False)}


@pytest.fixture(params=list(PATHS))
def kernel(request):
    return request.param


def test_adam_matches_torch_adam_over_steps_with_lr_changes(kernel):
    ours_model, ref_model = _model(0), _model(0)
    ours = PATHS[kernel](ours_model.parameters(), lr=3e-3, eps=1e-5)
    ref = torch.optim.Adam(ref_model.parameters(), lr=3e-3, eps=1e-5)
    gen = torch.Generator().manual_seed(1)
    for step in range(25):
        x = torch.randn(32, 5, generator=gen)
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            for group in opt.param_groups:
                group["lr"] = 3e-3 * (1 - step / 30)
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first,second", [("plain", "plain"), ("fused", "fused"),
                                          ("plain", "fused"), ("fused", "plain")])
def test_adam_state_dict_round_trip_continues_identically(first, second):
    """Either path's checkpoint resumes on either path (a run saved with accel auto resumes
    with accel off)."""
    model_a, model_b = _model(2), _model(2)
    opt_a = PATHS[first](model_a.parameters(), lr=1e-2)
    x = torch.randn(8, 5)
    for _ in range(3):
        opt_a.zero_grad()
        model_a(x).sum().backward()
        opt_a.step()
    model_b.load_state_dict(model_a.state_dict())
    opt_b = PATHS[second](model_b.parameters(), lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.steps == 3 and opt_b.param_groups[0]["lr"] == 1e-2
    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_switching_paths_mid_training_carries_the_moments():
    ours_model, ref_model = _model(8), _model(8)
    ours = palaestra.Adam(ours_model.parameters(), lr=1e-2)
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    x = torch.randn(8, 5)
    for step in range(6):
        if step in (2, 4):
            ours.accelerate(step == 2)
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    assert ours.steps == 6
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_skips_parameters_without_gradients(kernel):
    model = _model(3)
    opt = PATHS[kernel](model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    model[2](torch.randn(4, 16)).sum().backward()  # only the last layer gets gradients
    opt.step()
    after = list(model.parameters())
    assert torch.equal(before[0], after[0]) and not torch.equal(before[2], after[2])


def test_adam_follows_parameters_whose_storage_was_replaced():
    """module.to(device) replaces parameter storage; the flat buffer must follow it."""
    ours_model, ref_model = _model(4), _model(4)
    ours = PATHS["fused"](ours_model.parameters(), lr=1e-2)
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    x = torch.randn(16, 5)
    for step in range(4):
        if step == 2:
            for p in ours_model.parameters():
                p.data = p.data.clone()  # what moving to another device does
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_max_grad_norm_matches_clip_grad_norm_then_adam(kernel):
    ours_model, ref_model = _model(5), _model(5)
    ours = PATHS[kernel](ours_model.parameters(), lr=1e-2, max_grad_norm=0.05)
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        x = torch.randn(16, 5, generator=gen)
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            if opt is ref:
                norm = torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 0.05)
            opt.step()
        assert ours.last_grad_norm == pytest.approx(float(norm), rel=1e-5)
        assert float(norm) > 0.05  # the clip was active
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_keeps_parameters_as_views_of_one_flat_buffer_and_bumps_versions():
    """The flat path bumps the parameters' version counters, so that autograd refuses a
    backward through values a step overwrote."""
    model = _model(6)
    opt = PATHS["fused"](model.parameters(), lr=0.1)
    versions = [p._version for p in model.parameters()]
    model(torch.randn(4, 5)).sum().backward()
    opt.step()
    assert all(p._version > v for p, v in zip(model.parameters(), versions))
    flat = opt._flat_adam()._flat
    for p in model.parameters():
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    # a state_dict load copies in place: the parameters stay views and the values arrive
    other = _model(7)
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(flat[: 5 * 16].view(16, 5), other[0].weight)
    y = model(torch.randn(4, 5)).sum()
    model.zero_grad()
    opt.step()  # no gradients: nothing changes, nothing is bumped
    y.backward()


def test_a_backward_through_weights_a_step_changed_is_refused():
    model = _model(9)
    opt = PATHS["fused"](model.parameters(), lr=0.1)
    model(torch.randn(4, 5)).sum().backward()
    y = model(torch.randn(4, 5)).sum()  # saves the weights for its backward
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
