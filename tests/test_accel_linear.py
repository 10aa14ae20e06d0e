"""`palaestra.accel.linear`: F.linear's values and gradients, whichever kernel computes them."""
import pytest
import torch
import torch.nn.functional as F

from palaestra.accel import linear as linear_module
from palaestra.accel.linear import MIN_PRODUCT, OneDNNLinear, linear, use_onednn_linears

needs_onednn = pytest.mark.skipif(not linear_module.onednn_available(),
                                  reason="torch built without oneDNN")


def _inputs(shape, out, seed=0, bias=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, requires_grad=True)
    w = (torch.randn(out, shape[-1], generator=gen) / shape[-1] ** 0.5).requires_grad_()
    b = torch.randn(out, generator=gen, requires_grad=True) if bias else None
    return x, w, b


@needs_onednn
@pytest.mark.parametrize("shape,out,bias", [((256, 256), 256, True), ((300, 128), 130, False),
                                            ((4096, 4), 256, True), ((256, 3, 128), 96, True),
                                            ((256, 256), 1, True), ((5, 7), 3, True)])
def test_values_and_gradients_match_f_linear(shape, out, bias):
    x, w, b = _inputs(shape, out, bias=bias)
    params = [t for t in (x, w, b) if t is not None]
    ours = linear(x, w, b)
    large = x.numel() * out >= MIN_PRODUCT
    node = ours.grad_fn if len(shape) == 2 else ours.grad_fn.next_functions[0][0]
    assert (node.name() == "_OneDNNLinearBackward") == large
    ref = F.linear(x, w, b)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    ours_grads = torch.autograd.grad(ours, params, g)
    ref_grads = torch.autograd.grad(ref, params, g)
    for a, r in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-3)


@needs_onednn
def test_large_products_take_the_onednn_path_and_small_ones_do_not():
    big, _, _ = _inputs((256, 256), 256)
    small, _, _ = _inputs((8, 8), 8)
    assert 256 * 256 * 256 >= MIN_PRODUCT > 8 * 8 * 8
    assert linear(big, torch.randn(256, 256)).grad_fn.name() == "_OneDNNLinearBackward"
    assert linear(small, torch.randn(8, 8)).grad_fn.name() != "_OneDNNLinearBackward"


@needs_onednn
def test_only_the_gradients_asked_for_are_computed():
    x, w, b = _inputs((256, 256), 256)
    x.requires_grad_(False)
    y = linear(x, w, b)
    y.sum().backward()
    assert x.grad is None and w.grad is not None and b.grad is not None
    torch.testing.assert_close(b.grad, torch.full((256,), 256.0))


@needs_onednn
def test_second_order_gradients_follow_f_linear():
    """create_graph=True (a gradient penalty, say): the backward is differentiable."""
    results = []
    for fn in (linear, F.linear):
        x, w, b = _inputs((256, 256), 256, seed=4)
        y = torch.tanh(fn(x, w, b))
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        penalty = gx.pow(2).sum()
        results.append(torch.autograd.grad(penalty, [w, b]))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_linear_module_is_an_nn_linear_with_the_same_state_dict():
    torch.manual_seed(0)
    ours = OneDNNLinear(256, 256)
    ref = torch.nn.Linear(256, 256)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(512, 256)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
    assert set(ours.state_dict()) == {"weight", "bias"}


@needs_onednn
def test_use_onednn_linears_switches_plain_layers_only():
    class Scaled(torch.nn.Linear):  # a subclass computes something else: left alone
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), Scaled(256, 256))
    x = torch.randn(512, 256)
    before = net(x)
    keys = set(net.state_dict())
    assert use_onednn_linears(net) == 1
    assert type(net[0]) is OneDNNLinear and type(net[2]) is Scaled
    assert set(net.state_dict()) == keys
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-4)
    assert net[0](x.requires_grad_()).grad_fn.name() == "_OneDNNLinearBackward"


@needs_onednn
def test_backward_with_inputs_skips_the_products_it_does_not_want(monkeypatch):
    """backward(inputs=[x]) (SAC's policy loss through the critics) computes no weight
    gradient: a custom Function's needs_input_grad alone would say it is needed."""
    calls = []
    real = linear_module._product
    monkeypatch.setattr(linear_module, "_product", lambda a, b: calls.append(1) or real(a, b))
    x, w, b = _inputs((256, 256), 256)
    linear(x, w, b).sum().backward(inputs=[x])
    assert len(calls) == 1 and w.grad is None and x.grad is not None
    calls.clear()
    linear(x, w, b).sum().backward()
    assert len(calls) == 2 and w.grad is not None


@needs_onednn
def test_torch_func_transforms_fall_back_to_torch_kernels():
    x, w, b = _inputs((256, 256), 256, seed=5)
    x, w, b = x.detach(), w.detach(), b.detach()
    ours = torch.func.grad(lambda w_: linear(x, w_, b).tanh().sum())(w)
    ref = torch.func.grad(lambda w_: F.linear(x, w_, b).tanh().sum())(w)
    torch.testing.assert_close(ours, ref)


@needs_onednn
def test_no_grad_calls_give_the_same_values_without_a_graph():
    x, w, b = _inputs((256, 3, 128), 96, seed=6)
    with torch.no_grad():
        ours = linear(x, w, b)
        ref = F.linear(x, w, b)
    assert ours.grad_fn is None and ours.shape == (256, 3, 96)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
