"""The batch-first stacked layers compute exactly n independent torch.nn layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stan_model.models.layers import StackedLinear, StackedMLP


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
    for j, ref in enumerate(refs):  # and every map's weights
        torch.testing.assert_close(mlp.layers[0].weight.grad[j], ref[0].weight.grad.T)


def test_stacked_linear_takes_a_list_of_per_map_inputs():
    torch.manual_seed(0)
    lin = StackedLinear(3, 4, 2)
    x = torch.randn(5, 3, 4)
    torch.testing.assert_close(lin(list(x.unbind(1))), lin(x))
