"""The batch-first stacked layers compute exactly n independent torch.nn layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stan_model.models.layers import (
    Gates,
    StackedLinear,
    StackedMLP,
    _PerMapLinear,
    _SharedLinear,
    relu_,
)


def _reference(mlp: StackedMLP, j: int) -> nn.Sequential:
    """Map j of ``mlp`` as plain Linear -> BatchNorm1d -> ReLU layers with its weights."""
    layers = []
    for lin in mlp.layers:
        ref = nn.Linear(lin.weight.shape[1], lin.weight.shape[2])
        with torch.no_grad():
            ref.weight.copy_(lin.weight[j].T)
            ref.bias.copy_(lin.bias[j, 0])
        layers.append(ref)
        if mlp.norms is not None:
            layers.append(nn.BatchNorm1d(lin.weight.shape[2]))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.mark.parametrize("shared", [True, False])
def test_stacked_mlp_is_n_independent_mlps(shared):
    torch.manual_seed(0)
    n, b, d = 4, 32, 6
    mlp = StackedMLP(n, d, (8, 5), batch_norm=True).train()
    x = torch.randn(b, d) if shared else torch.randn(b, n, d)
    x.requires_grad_(True)
    y = mlp(x)  # (B, n, 5)
    assert y.shape == (b, n, 5)
    refs = [_reference(mlp, j) for j in range(n)]
    xr = x.detach().clone().requires_grad_(True)
    expected = torch.stack([refs[j](xr if shared else xr[:, j]) for j in range(n)], dim=1)
    torch.testing.assert_close(y, expected)
    g = torch.randn_like(y)
    y.backward(g)
    expected.backward(g)
    torch.testing.assert_close(x.grad, xr.grad)  # gradients reach the input alike
    for j, ref in enumerate(refs):  # and every map's weights, both layers
        torch.testing.assert_close(mlp.layers[0].weight.grad[j], ref[0].weight.grad.T)
        torch.testing.assert_close(mlp.layers[1].weight.grad[j], ref[3].weight.grad.T)
    # The biases before a BatchNorm are folded into it: frozen, yet the running means took
    # them in as BatchNorm1d did, so eval mode (which adds them) gives the reference's output.
    assert not any(lin.bias.requires_grad for lin in mlp.layers)
    for i, norm in enumerate(mlp.norms):
        for j, ref in enumerate(refs):
            torch.testing.assert_close(norm.running_mean[j, 0], ref[3 * i + 1].running_mean)
            torch.testing.assert_close(norm.running_var[j, 0], ref[3 * i + 1].running_var)
    mlp.eval()
    with torch.no_grad():
        x_eval = torch.randn_like(x)
        expected = [ref.eval()(x_eval if shared else x_eval[:, j]) for j, ref in enumerate(refs)]
        torch.testing.assert_close(mlp(x_eval), torch.stack(expected, dim=1))


def test_gates_with_batch_norm_are_n_independent_gates():
    torch.manual_seed(0)
    n, b, d, e = 3, 16, 5, 4
    gates = Gates(n, d, e, batch_norm=True).train()
    x = torch.randn(b, n, d, requires_grad=True)
    refs = []
    for j in range(n):
        lin, bn = nn.Linear(d, e), nn.BatchNorm1d(e)
        with torch.no_grad():
            lin.weight.copy_(gates.linear.weight[j].T)
            lin.bias.copy_(gates.linear.bias[j, 0])
        refs.append(nn.Sequential(lin, bn, nn.Softmax(dim=-1)))
    xr = x.detach().clone().requires_grad_(True)
    expected = torch.stack([refs[j](xr[:, j]) for j in range(n)], dim=1)
    got = gates(x)
    torch.testing.assert_close(got, expected)
    g = torch.randn_like(got)
    got.backward(g)
    expected.backward(g)
    torch.testing.assert_close(x.grad, xr.grad)
    gates.eval()
    refs = [r.eval() for r in refs]
    with torch.no_grad():
        torch.testing.assert_close(
            gates(x), torch.stack([refs[j](x[:, j]) for j in range(n)], dim=1)
        )


def test_per_map_linear_gradients_are_exact():
    """The per-map GEMMs write into one output and their input gradients into one tensor
    (a custom autograd Function): gradcheck in float64, with and without the bias."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_PerMapLinear.apply, (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: _PerMapLinear.apply(x, w, None), (x, w))


def test_shared_input_linear_gradients_are_exact():
    """One GEMM for every map on a shared input, its weight gradient computed transposed (a
    custom autograd Function): gradcheck in float64, with and without the bias."""
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SharedLinear.apply, (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: _SharedLinear.apply(x, w, None), (x, w))


def test_per_map_linear_under_bf16_autocast_matches_plain_gemms():
    torch.manual_seed(0)
    lin = StackedLinear(3, 16, 8)
    x = torch.randn(32, 3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = lin(x)
        expected = torch.stack(
            [torch.addmm(lin.bias[j, 0], x[:, j], lin.weight[j]) for j in range(3)], dim=1
        )
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected)


def test_stacked_linear_takes_a_list_of_per_map_inputs():
    torch.manual_seed(0)
    lin = StackedLinear(3, 4, 2)
    x = torch.randn(5, 3, 4)
    torch.testing.assert_close(lin(list(x.unbind(1))), lin(x))


def test_bf16_in_place_relu_is_relu_for_every_bit_pattern():
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    x = bits.view(torch.bfloat16).clone().requires_grad_()
    want = torch.relu(x)
    got = relu_(x.clone())
    assert got.dtype == torch.bfloat16
    nan = want.isnan()
    assert torch.equal(got.isnan(), nan)
    assert torch.equal(got[~nan].float(), want[~nan].float())  # -0 and +0 compare equal
    grad = torch.randn(x.shape).bfloat16()
    (want_grad,) = torch.autograd.grad(want, x, grad)
    (got_grad,) = torch.autograd.grad(relu_(x.clone()), x, grad)
    assert torch.equal(got_grad, want_grad)
