"""RMSprop in Keras' form: the formula step by step, the compiled kernel and its exact eager form, the fallback."""

import math

import pytest
import torch

from fmnist_pl.optim import registry as optimizers
from fmnist_pl.optim.keras_rmsprop import KerasRMSprop, wait_for_compiles
from fmnist_pl.optim.registry import resolve


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "compiled"])
def test_keras_rmsprop_matches_the_formula_step_by_step(fused):
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))
    # Gradients spanning the scale where the eps placement matters (sqrt(1e-7) ~ 3e-4).
    grads = [torch.randn(5, 3) * scale for scale in (1e-5, 1e-3, 1.0, 1e-4)]
    # Two param groups with their own lr: the compiled kernel takes lr as data, not as a constant.
    opt = KerasRMSprop([{"params": [w]}, {"params": [b], "lr": 0.01}], lr=0.001, rho=0.9, eps=1e-7, fused=fused)
    ref = {"w": (w.detach().clone().double(), torch.zeros(5, 3, dtype=torch.float64), 0.001),
           "b": (b.detach().clone().double(), torch.zeros(3, dtype=torch.float64), 0.01)}
    for g in grads:
        w.grad, b.grad = g.clone(), g[0].clone()
        opt.step()
        for name, p, grad in (("w", w, g), ("b", b, g[0])):
            value, s, lr = ref[name]
            s = 0.9 * s + 0.1 * grad.double() ** 2
            value = value - lr * grad.double() / torch.sqrt(s + 1e-7)
            ref[name] = (value, s, lr)
            torch.testing.assert_close(p.detach().double(), value, rtol=1e-5, atol=1e-7)
    assert opt.fused_ran is fused  # the fused arithmetic ran (compiled, or its exact eager form)
    assert optimizers.implementation(opt) == ("fused (compiled)" if fused else "foreach")


def test_the_eager_form_has_the_compiled_kernels_numbers_bit_for_bit():
    """So that a step taken before the background compile finished (or without a compiler) is the
    step the kernel would have taken: no number depends on when the compiler was done."""
    from fmnist_pl.optim.keras_rmsprop import _compiled_update, _exact_update

    stacked = [torch.randn(3, 30, 78), torch.randn(3, 30)]  # member views, as the lockstep engine has them
    runs = []
    for update in (_compiled_update(), _exact_update):
        params = [torch.nn.Parameter(t.clone()[1]) for t in stacked]
        squares = [torch.zeros_like(p) for p in params]
        gen = torch.Generator().manual_seed(0)
        hyper = [torch.tensor(v, dtype=torch.float64) for v in (1e-3, 0.9, 1e-7)]
        with torch.no_grad():
            for i in range(60):  # gradients from 1 to 1e-7: where sqrt and eps decide the last bit
                update(params, [torch.randn(p.shape, generator=gen) * 10.0 ** -(i % 8) for p in params], squares,
                       *hyper)
        runs.append([t.detach() for t in (*params, *squares)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_the_compile_runs_in_the_background_and_the_switch_changes_no_number():
    from fmnist_pl.optim.keras_rmsprop import _exact_update

    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(17, 23))
    ref, ref_s = w.detach().clone(), torch.zeros(17, 23)
    opt = KerasRMSprop([w], lr=0.01, fused=True)
    hyper = [torch.tensor(v, dtype=torch.float64) for v in (0.01, 0.9, 1e-7)]
    for step in range(40):
        g = torch.randn(17, 23) * 1e-3
        w.grad = g.clone()
        opt.step()
        _exact_update([ref], [g], [ref_s], *hyper)
        if step == 0:
            wait_for_compiles(timeout=300)  # the first step started the build; later ones use the kernel
    assert opt.fused_ran and 0 < opt.compiled_steps < 40
    assert torch.equal(w.detach(), ref)


def test_views_of_stacked_weights_compile_on_look_alikes_of_one_storage_each():
    """As in a lockstep group: each member's tensors are views of one stacked tensor."""
    from fmnist_pl.optim.keras_rmsprop import _alike, _exact_update, _layout

    torch.manual_seed(2)
    stacked = torch.randn(6, 17, 23)
    members = [torch.nn.Parameter(stacked[k]) for k in range(6)]
    grads = torch.zeros(6, 17, 23)
    like = _alike(_layout([members, [grads[k] for k in range(6)]]))
    assert len({t.untyped_storage().data_ptr() for t in like[0]}) == 1  # one storage for the six views
    assert like[0][5].untyped_storage().nbytes() == stacked.untyped_storage().nbytes()  # of its size, once
    assert [(t.shape, t.stride(), t.storage_offset(), t.requires_grad) for t in like[0]] == [
        (t.shape, t.stride(), t.storage_offset(), t.requires_grad) for t in members]
    ref, ref_s = stacked.clone(), torch.zeros(6, 17, 23)
    opt = KerasRMSprop(members, lr=0.01, fused=True)
    hyper = [torch.tensor(v, dtype=torch.float64) for v in (0.01, 0.9, 1e-7)]
    for step in range(30):
        grads.copy_(torch.randn(6, 17, 23) * 1e-3)
        for k, p in enumerate(members):
            p.grad = grads[k]
        opt.step()
        _exact_update([ref[k] for k in range(6)], [grads[k] for k in range(6)], [ref_s[k] for k in range(6)], *hyper)
        if step == 0:
            wait_for_compiles(timeout=300)
    assert 0 < opt.compiled_steps < 30  # the kernel built on the look-alikes is the one the real views use
    assert torch.equal(stacked, ref)


def test_without_a_compiler_the_eager_form_runs_with_a_warning(monkeypatch):
    from fmnist_pl.optim import keras_rmsprop

    def no_compiler():
        def fail(*args):
            raise RuntimeError("no C++ compiler found\nsecond line")
        return fail

    monkeypatch.setattr(keras_rmsprop, "_compiled_update", no_compiler)
    monkeypatch.setattr(keras_rmsprop, "_BUILDS", keras_rmsprop._Builds())
    w = torch.nn.Parameter(torch.ones(4))
    opt = KerasRMSprop([w], lr=0.001, fused=True)
    w.grad = torch.full((4,), 0.5)
    opt.step()  # starts the build, steps eagerly
    wait_for_compiles(timeout=300)
    with pytest.warns(RuntimeWarning, match=r"could not compile its kernel \(RuntimeError: no C\+\+ compiler found\); "
                                            "its exact eager form runs instead"):
        opt.step()
    assert opt.fused_ran and opt.compiled_steps == 0
    s = 0.1 * 0.25
    first = 1 - 0.001 * 0.5 / math.sqrt(s + 1e-7)
    second = first - 0.001 * 0.5 / math.sqrt(0.9 * s + s + 1e-7)
    torch.testing.assert_close(w.detach(), torch.full((4,), second))


def test_keras_form_differs_from_torch_form_for_small_gradients():
    g = torch.full((4,), 1e-5)
    out = {}
    for name in ("rmsprop", "rmsprop-torch"):
        w = torch.nn.Parameter(torch.zeros(4))
        opt = resolve([name])[0].build([w])
        w.grad = g.clone()
        opt.step()
        out[name] = w.detach().abs().mean().item()
    # Keras: 1e-3*1e-5/sqrt(1e-11+1e-7) ~ 3e-5; torch: 1e-3*1e-5/(sqrt(1e-11)+1e-7) ~ 3e-3
    assert out["rmsprop-torch"] > 50 * out["rmsprop"]


