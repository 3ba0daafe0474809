"""RMSprop in Keras' form: the formula step by step, the compiled kernel, the fallback."""

import math

import pytest
import torch

from fmnist_pl.optim import registry as optimizers
from fmnist_pl.optim.keras_rmsprop import KerasRMSprop
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
    assert opt.fused_ran is fused  # the compiled kernel ran (a failed compile falls back to foreach)
    assert optimizers.implementation(opt) == ("fused (compiled)" if fused else "foreach")


def test_keras_rmsprop_falls_back_to_foreach_when_it_cannot_compile(monkeypatch):
    from fmnist_pl.optim import keras_rmsprop

    def no_compiler():
        def fail(*args):
            raise RuntimeError("no C++ compiler found\nsecond line")
        return fail

    monkeypatch.setattr(keras_rmsprop, "_compiled_update", no_compiler)
    w = torch.nn.Parameter(torch.ones(4))
    opt = KerasRMSprop([w], lr=0.001, fused=True)
    w.grad = torch.full((4,), 0.5)
    with pytest.warns(RuntimeWarning, match="could not compile its kernel, using the foreach update instead "
                                            r"\(RuntimeError: no C\+\+ compiler found\)"):
        opt.step()
    assert opt.fused is False
    torch.testing.assert_close(w.detach(), torch.full((4,), 1 - 0.001 * 0.5 / math.sqrt(0.1 * 0.25 + 1e-7)))


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


