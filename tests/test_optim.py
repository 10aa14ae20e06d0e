"""palaestra.Adam must follow torch.optim.Adam step for step (it replaces it to save start-up)."""
import pytest
import torch

from palaestra import Adam


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


@pytest.fixture(params=["fused", "plain"])
def kernel(request, monkeypatch):
    """Both update paths: torch's fused kernel and the five-op fallback (torch < 2.4)."""
    if request.param == "plain":
        monkeypatch.setattr("palaestra.optim._FUSED_ON", set())
    return request.param


def test_adam_matches_torch_adam_over_steps_with_lr_changes(kernel):
    ours_model, ref_model = _model(0), _model(0)
    ours = Adam(ours_model.parameters(), lr=3e-3, eps=1e-5)
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


def test_adam_state_dict_round_trip_continues_identically():
    model_a, model_b = _model(2), _model(2)
    opt_a = Adam(model_a.parameters(), lr=1e-2)
    x = torch.randn(8, 5)
    for _ in range(3):
        opt_a.zero_grad()
        model_a(x).sum().backward()
        opt_a.step()
    model_b.load_state_dict(model_a.state_dict())
    opt_b = Adam(model_b.parameters(), lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.steps == 3 and opt_b.param_groups[0]["lr"] == 1e-2
    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b)


def test_adam_skips_parameters_without_gradients(kernel):
    model = _model(3)
    opt = Adam(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    model[2](torch.randn(4, 16)).sum().backward()  # only the last layer gets gradients
    opt.step()
    after = list(model.parameters())
    assert torch.equal(before[0], after[0]) and not torch.equal(before[2], after[2])


def test_adam_follows_parameters_whose_storage_was_replaced():
    """module.to(device) replaces parameter storage; the flat buffer must follow it."""
    ours_model, ref_model = _model(4), _model(4)
    ours = Adam(ours_model.parameters(), lr=1e-2)
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
    ours = Adam(ours_model.parameters(), lr=1e-2, max_grad_norm=0.05)
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
    model = _model(6)
    opt = Adam(model.parameters(), lr=0.1)
    versions = [p._version for p in model.parameters()]
    model(torch.randn(4, 5)).sum().backward()
    opt.step()
    assert all(p._version > v for p, v in zip(model.parameters(), versions))
    flat = opt._flat
    for p in model.parameters():
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    # a state_dict load copies in place: the parameters stay views and the values arrive
    other = _model(7)
    model.load_state_dict(other.state_dict())
    assert opt._still_flat()
    torch.testing.assert_close(opt._flat[: 5 * 16].view(16, 5), other[0].weight)
