import math

import pytest
import torch

from fmnist_pl import optimizers
from fmnist_pl.keras_rmsprop import KerasRMSprop
from fmnist_pl.optimizers import REGISTRY, OptimizerError, parse_overrides, resolve


def test_reference_hyperparameters_are_exact():
    specs = {s.name: s for s in resolve(["sgd", "momentum", "rmsprop", "adam"])}
    assert REGISTRY["sgd"].class_name == "SGD" and specs["sgd"].hparams["lr"] == 0.01
    assert specs["sgd"].hparams["momentum"] == 0.0
    assert REGISTRY["momentum"].class_name == "SGD"
    assert (specs["momentum"].hparams["lr"], specs["momentum"].hparams["momentum"]) == (0.01, 0.9)
    assert REGISTRY["rmsprop"].cls is KerasRMSprop
    assert {k: specs["rmsprop"].hparams[k] for k in ("lr", "rho", "eps")} == {"lr": 0.001, "rho": 0.9, "eps": 1e-7}
    assert REGISTRY["adam"].cls is torch.optim.Adam
    assert {k: specs["adam"].hparams[k] for k in ("lr", "betas", "eps")} == {
        "lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7}
    assert REGISTRY["rmsprop-torch"].cls is torch.optim.RMSprop
    for name in ("adamw", "nadam", "adagrad"):
        assert name in REGISTRY


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_optimizer_builds_and_steps(name):
    w = torch.nn.Parameter(torch.ones(3, 4))
    (spec,) = resolve([name])
    opt = spec.build([w])
    assert type(opt) is REGISTRY[name].cls
    for key, value in spec.hparams.items():
        got = opt.param_groups[0][key]
        assert (tuple(got) if isinstance(got, (list, tuple)) else got) == value
    (w ** 2).sum().backward()
    opt.step()
    assert not torch.equal(w.detach(), torch.ones(3, 4))


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
    from fmnist_pl import keras_rmsprop

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


def test_build_shared_compiles_only_when_asked():
    (rms,) = resolve(["rmsprop"])
    (adam,) = resolve(["adam"])
    assert optimizers.build_shared([rms], [[torch.nn.Parameter(torch.ones(2))]]).fused is False
    assert optimizers.build_shared([rms], [[torch.nn.Parameter(torch.ones(2))]], compile_fused=True).fused is True
    # torch's own fused kernels need no compile: always on.
    built = optimizers.build_shared([adam], [[torch.nn.Parameter(torch.ones(2))]])
    assert built.defaults["fused"] is True and optimizers.implementation(built) == "fused"


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


def test_shared_instance_updates_like_separate_ones():
    torch.manual_seed(1)
    a, b = torch.randn(6), torch.randn(6)
    specs = resolve(["adam"], overrides={"adam": {"lr": "0.01"}})
    other = optimizers.OptimizerSpec("adam", dict(specs[0].hparams) | {"lr": 0.002})
    p1, p2 = torch.nn.Parameter(a.clone()), torch.nn.Parameter(b.clone())
    shared = optimizers.build_shared([specs[0], other], [[p1], [p2]])
    q1, q2 = torch.nn.Parameter(a.clone()), torch.nn.Parameter(b.clone())
    o1, o2 = specs[0].build([q1]), other.build([q2])
    for _ in range(3):
        for p in (p1, p2, q1, q2):
            p.grad = torch.sin(p.detach())
        shared.step(), o1.step(), o2.step()
    torch.testing.assert_close(p1, q1)
    torch.testing.assert_close(p2, q2)


def test_lr_for_all_and_overrides():
    specs = resolve(["sgd", "adam"], lr=0.05, overrides=parse_overrides(["adam.betas=0.8,0.99", "sgd.nesterov=true"]))
    assert [s.hparams["lr"] for s in specs] == [0.05, 0.05]
    assert specs[1].hparams["betas"] == (0.8, 0.99) and specs[0].hparams["nesterov"] is True


@pytest.mark.parametrize("call, message", [
    (lambda: resolve(["sgd", "nope"]), "unknown optimizer 'nope'; choose from: sgd, momentum"),
    (lambda: parse_overrides(["adam.lr"]), "write OPTIMIZER.PARAM=VALUE"),
    (lambda: resolve(["adam"], overrides={"adam": {"foo": "1"}}), "unknown hyperparameter adam.foo; adam has: lr"),
    (lambda: resolve(["adam"], overrides={"adam": {"lr": "fast"}}), "bad value 'fast' for adam.lr"),
    (lambda: resolve(["adam"], overrides={"adam": {"lr": "-1"}}), "must be > 0"),
    (lambda: resolve(["adam"], overrides={"sgd": {"lr": "1"}}), "not among --optimizers"),
    (lambda: resolve(["adam"], lr=math.nan), "finite"),
])
def test_user_errors_are_one_line(call, message):
    with pytest.raises(OptimizerError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
