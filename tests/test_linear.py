"""`palaestra.networks.linear`: F.linear's values and gradients, whichever kernel computes them."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from palaestra.networks import linear as linear_module
from palaestra.networks.linear import MIN_PRODUCT, Linear, linear

needs_onednn = pytest.mark.skipif(not linear_module.ONEDNN, reason="torch built without oneDNN")


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
    ours = Linear(256, 256)
    ref = torch.nn.Linear(256, 256)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(512, 256)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
    assert set(ours.state_dict()) == {"weight", "bias"}


def test_palaestra_onednn_0_turns_it_off():
    code = ("import torch; from palaestra.networks.linear import ONEDNN, linear; "
            "x = torch.randn(256, 256, requires_grad=True); "
            "print(ONEDNN, linear(x, torch.randn(256, 256)).grad_fn.name())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PALAESTRA_ONEDNN": "0"}).stdout.split()
    assert out[0] == "False" and out[1] != "_OneDNNLinearBackward"


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
