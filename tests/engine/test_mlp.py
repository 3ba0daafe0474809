"""The plain MLP (Keras' initialisation) and the stacked forward of K of them."""

import math

import pytest
import torch

from fmnist_pl.engine import mlp
from fmnist_pl.engine.mlp import MLP, StackedMLP, seeded_mlp


def _autograd_nodes(tensor: torch.Tensor) -> set[str]:
    """The names of every backward node behind ``tensor``."""
    seen, todo = {}, [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node.name()
            todo.extend(n for n, _ in node.next_functions)
    return set(seen.values())


@pytest.fixture(params=["onednn", "blas"])
def first_layer(request, monkeypatch):
    """Both ways the first layer can multiply on a CPU: oneDNN's GEMM (where torch has it, as in
    the pinned build) and torch's BLAS (a build without oneDNN)."""
    if request.param == "onednn":
        assert mlp._LINEAR is not None, "this torch build has no oneDNN linear: the engine falls back to BLAS"
    else:
        monkeypatch.setattr(mlp, "_LINEAR", None)
    return request.param


def test_parameter_count_is_the_references():
    assert sum(p.numel() for p in MLP((300, 100)).parameters()) == 266_610


def test_glorot_uniform_weights_and_zero_biases():
    net = seeded_mlp((300, 100), seed=3)
    for layer in net.linears():
        fan_out, fan_in = layer.weight.shape
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= limit
        assert layer.weight.abs().max() > 0.9 * limit  # uniform over the whole range, not Kaiming's
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.equal(seeded_mlp((300, 100), 3).linears()[0].weight, net.linears()[0].weight)
    assert not torch.equal(seeded_mlp((300, 100), 4).linears()[0].weight, net.linears()[0].weight)


def test_stacked_forward_and_gradients_equal_separate_models(first_layer):
    torch.manual_seed(0)
    members = [seeded_mlp((30, 20), s) for s in (1, 2, 1, 2)]  # 2 seed groups x 2 members
    for m in members:  # non-zero biases so that their layout is exercised too
        for layer in m.linears():
            torch.nn.init.uniform_(layer.bias, -0.1, 0.1)
    net = StackedMLP(members, groups=2)
    x = torch.rand(2, 7, 784)
    logits = net(x)  # [K, C, B]
    assert logits.shape == (4, 10, 7)
    assert ("_FirstLayerBackward" in _autograd_nodes(logits)) is (first_layer == "onednn")  # the path under test ran
    group_of = [0, 0, 1, 1]
    for k, m in enumerate(members):
        torch.testing.assert_close(logits[k].T, m(x[group_of[k]]), rtol=1e-5, atol=1e-5)
    y = torch.randint(0, 10, (7,))
    torch.nn.functional.cross_entropy(logits, y.expand(4, 7), reduction="none").mean(1).sum().backward()
    for k, m in enumerate(members):
        torch.nn.functional.cross_entropy(m(x[group_of[k]]), y).backward()
        torch.testing.assert_close(net.weights[0].grad[k], m.linears()[0].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(net.biases[2].grad[k], m.linears()[2].bias.grad, rtol=1e-4, atol=1e-6)
        reloaded = MLP((30, 20))
        reloaded.load_state_dict(net.member_state_dict(k))  # a member is a plain MLP again
        torch.testing.assert_close(reloaded(x[group_of[k]]), logits[k].T, rtol=1e-5, atol=1e-5)


def test_a_members_numbers_do_not_depend_on_its_companions(first_layer):
    """Bit for bit: one member alone, beside three others, and in a two-seed stack (CPU BLAS threading),
    at the engine's shapes (oneDNN picks its kernels by problem size; a row's reduction must not change)."""
    torch.manual_seed(0)
    x, y = torch.rand(2, 32, 784), torch.randint(0, 10, (2, 32))

    def step(seeds, groups):
        net = StackedMLP([seeded_mlp((300, 100), s) for s in seeds], groups=groups)
        for b in net.biases:
            b.data += 0.01
        logits = net(x[:groups])
        targets = y[:groups].repeat_interleave(len(seeds) // groups, 0)
        torch.nn.functional.cross_entropy(logits, targets, reduction="none").mean(1).sum().backward()
        return [logits[0].detach(), net(x[0, :5])[0].detach(), *(p.grad[0] for p in net.parameters_in_order())]

    alone = step([42], 1)
    for seeds, groups in (([42, 42, 42, 42], 1), ([42, 43], 2), ([42, 42, 43, 43], 2), ([42] * 16, 1)):
        beside = step(seeds, groups)
        assert all(torch.equal(a, b) for a, b in zip(alone, beside)), (seeds, groups)


def test_parameter_order_follows_the_modules_parameters_through_moves_and_loads():
    net = StackedMLP([seeded_mlp((6, 5), s) for s in (1, 2)])
    listed = lambda: [*net.weights, *net.biases]  # noqa: E731 - what parameters_in_order must equal
    assert all(a is b for a, b in zip(net.parameters_in_order(), listed(), strict=True))
    other = StackedMLP([seeded_mlp((6, 5), s) for s in (3, 4)])
    net.load_state_dict(other.state_dict())
    net.to(torch.float64)
    assert all(a is b for a, b in zip(net.parameters_in_order(), listed(), strict=True))
    assert net.parameters_in_order()[0].dtype == torch.float64
    assert torch.equal(net.parameters_in_order()[0], other.weights[0].double())


def test_the_images_gradient_through_the_onednn_first_layer_equals_blas(monkeypatch):
    """Training never asks for it, but the first layer's autograd function answers it right."""
    assert mlp._LINEAR is not None
    net = StackedMLP([seeded_mlp((30, 20), s) for s in (1, 2, 1, 2)], groups=2)
    grads = []
    for linear in (mlp._LINEAR, None):
        monkeypatch.setattr(mlp, "_LINEAR", linear)
        x = torch.rand(2, 5, 784, generator=torch.Generator().manual_seed(0)).requires_grad_()
        net(x).square().sum().backward()
        grads.append((x.grad, *(p.grad.clone() for p in net.parameters_in_order())))
        net.zero_grad()
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_population_scoring_keeps_the_images_gradient_on_the_onednn_path(monkeypatch):
    """Members' weights as slices of one population tensor take their own path; asked for the
    images' gradient, it must not go through oneDNN's op, which has no autograd."""
    from fmnist_pl.architecture import parameter_count
    from fmnist_pl.engine.population import population_logits

    solutions = torch.randn(3, parameter_count((30, 20)), generator=torch.Generator().manual_seed(0)) * 0.1
    grads = []
    for linear in (mlp._LINEAR, None):
        monkeypatch.setattr(mlp, "_LINEAR", linear)
        x = torch.rand(5, 784, generator=torch.Generator().manual_seed(1)).requires_grad_()
        population_logits(solutions, x, (30, 20)).square().sum().backward()
        grads.append(x.grad)
    assert grads[0] is not None
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
