"""RMSprop in Keras' form: the formula step by step, the C kernel and its exact eager form, the fallback."""

import functools
import math

import pytest
import torch

from fmnist_pl.optim import registry as optimizers
from fmnist_pl.optim.keras_rmsprop import KerasRMSprop
from fmnist_pl.optim.registry import resolve


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "c-kernel"])
def test_keras_rmsprop_matches_the_formula_step_by_step(fused):
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))
    # Gradients spanning the scale where the eps placement matters (sqrt(1e-7) ~ 3e-4).
    grads = [torch.randn(5, 3) * scale for scale in (1e-5, 1e-3, 1.0, 1e-4)]
    # Two param groups with their own lr.
    opt = KerasRMSprop([{"params": [w]}, {"params": [b], "lr": 0.01}], lr=0.001, rho=0.9, eps=1e-7, fused=fused)
    ref = {
        "w": (w.detach().clone().double(), torch.zeros(5, 3, dtype=torch.float64), 0.001),
        "b": (b.detach().clone().double(), torch.zeros(3, dtype=torch.float64), 0.01),
    }
    for g in grads:
        w.grad, b.grad = g.clone(), g[0].clone()
        opt.step()
        for name, p, grad in (("w", w, g), ("b", b, g[0])):
            value, s, lr = ref[name]
            s = 0.9 * s + 0.1 * grad.double() ** 2
            value = value - lr * grad.double() / torch.sqrt(s + 1e-7)
            ref[name] = (value, s, lr)
            torch.testing.assert_close(p.detach().double(), value, rtol=1e-5, atol=1e-7)
    # The C kernel made every update: 4 steps of 2 param groups.
    assert opt.fused_ran is fused and opt.kernel_steps == (8 if fused else 0)
    assert optimizers.implementation(opt) == ("fused (C kernel)" if fused else "foreach")


def _steps(update, stacked: list[torch.Tensor], member: int, steps: int = 60) -> list[torch.Tensor]:
    """``steps`` updates of one member's views of ``stacked`` (as a lockstep group holds them), with
    gradients from 1 to 1e-7 (where the square root and eps decide the last bit); weights and squares."""
    params = [torch.nn.Parameter(t.clone()[member]) for t in stacked]
    squares = [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i in range(steps):
            update(params, [torch.randn(p.shape, generator=gen) * 10.0 ** -(i % 8) for p in params], squares)
    return [t.detach() for t in (*params, *squares)]


def test_the_eager_form_has_the_c_kernels_numbers_bit_for_bit():
    """So that a machine without a C compiler trains with the same numbers: no number depends on the kernel."""
    from fmnist_pl.optim.keras_rmsprop import _exact_update, _kernel

    kernel = _kernel()
    assert callable(kernel), kernel  # this machine has a C compiler (CI's too)
    opt = KerasRMSprop([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, fused=True)

    def fused(params, grads, squares):
        for p, g in zip(params, grads):
            p.grad = g
        opt.param_groups[0]["params"] = params
        for p, s in zip(params, squares):
            opt.state[p]["square_avg"] = s
        opt.step()

    stacked = [torch.randn(3, 30, 78), torch.randn(3, 300), torch.randn(3, 7)]  # odd sizes: the vector loop's tail
    for member in (0, 2):
        by_kernel = _steps(fused, stacked, member)
        by_torch = _steps(lambda p, g, s: _exact_update(p, g, s, 1e-3, 0.9, 1e-7), stacked, member)
        assert all(torch.equal(a, b) for a, b in zip(by_kernel, by_torch))
    assert opt.kernel_steps == 120


def test_the_kernel_is_built_once_per_machine_into_the_cache(tmp_path, monkeypatch):
    from fmnist_pl.optim import keras_rmsprop

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = keras_rmsprop.build_kernel()
    assert first.parent == tmp_path / "fmnist-pl" and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert keras_rmsprop.build_kernel() == first and first.stat().st_mtime_ns == stamp  # found, not rebuilt
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left behind
    # A cache folder that cannot be created (here: under a file) falls back to the temporary folder.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    monkeypatch.setattr(keras_rmsprop.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fallback = keras_rmsprop.build_kernel()
    assert fallback.parent.parent == tmp_path / "tmp" and fallback.name == first.name


def test_non_contiguous_tensors_take_the_exact_eager_form():
    """The kernel walks memory linearly; a strided view is updated by torch ops, with the same numbers."""
    from fmnist_pl.optim.keras_rmsprop import _exact_update

    torch.manual_seed(1)
    base = torch.randn(6, 8)
    w = torch.nn.Parameter(base.t())  # not contiguous
    ref, ref_s = base.t().clone(), torch.zeros(8, 6)
    opt = KerasRMSprop([w], lr=0.01, fused=True)
    for _ in range(5):
        g = torch.randn(8, 6) * 1e-3
        w.grad = g
        opt.step()
        _exact_update([ref], [g], [ref_s], 0.01, 0.9, 1e-7)
    assert opt.fused_ran and opt.kernel_steps == 0
    assert torch.equal(w.detach(), ref)


def test_without_a_compiler_the_eager_form_runs_with_a_warning(monkeypatch):
    from fmnist_pl.optim import keras_rmsprop

    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setattr(keras_rmsprop, "_kernel", functools.cache(keras_rmsprop._kernel.__wrapped__))
    w = torch.nn.Parameter(torch.ones(4))
    opt = KerasRMSprop([w], lr=0.001, fused=True)
    w.grad = torch.full((4,), 0.5)
    with pytest.warns(
        RuntimeWarning,
        match=r"could not build its C kernel \(FileNotFoundError: no C compiler "
        r"\(no-such-compiler\) on the PATH\); its exact eager form runs instead",
    ):
        opt.step()
    opt.step()  # one warning, not one per step
    assert opt.fused_ran and opt.kernel_steps == 0
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
