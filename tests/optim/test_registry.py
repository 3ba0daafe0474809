import pytest
import torch

from fmnist_pl.optim import registry as optimizers
from fmnist_pl.optim.keras_rmsprop import KerasRMSprop
from fmnist_pl.optim.registry import REGISTRY, OptimizerError, parse_overrides, resolve


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
        "lr": 0.001,
        "betas": (0.9, 0.999),
        "eps": 1e-7,
    }
    assert REGISTRY["rmsprop-torch"].cls is torch.optim.RMSprop
    for name in ("adamw", "nadam", "adagrad"):
        assert name in REGISTRY


@pytest.mark.parametrize("name", [name for name, info in REGISTRY.items() if not info.gradient_free])
def test_every_registered_optimizer_builds_and_steps(name):
    w = torch.nn.Parameter(torch.ones(3, 4))
    (spec,) = resolve([name])
    opt = spec.build([w])
    assert type(opt) is REGISTRY[name].cls
    for key, value in spec.hparams.items():
        got = opt.param_groups[0][key]
        assert (tuple(got) if isinstance(got, (list, tuple)) else got) == value
    (w**2).sum().backward()
    opt.step()
    assert not torch.equal(w.detach(), torch.ones(3, 4))


def test_build_shared_uses_the_c_kernel_only_when_asked():
    (rms,) = resolve(["rmsprop"])
    (adam,) = resolve(["adam"])
    assert optimizers.build_shared([rms], [[torch.nn.Parameter(torch.ones(2))]]).fused is False
    assert optimizers.build_shared([rms], [[torch.nn.Parameter(torch.ones(2))]], fused_kernel=True).fused is True
    # torch's own fused kernels need no build: always on.
    built = optimizers.build_shared([adam], [[torch.nn.Parameter(torch.ones(2))]])
    assert built.defaults["fused"] is True and optimizers.implementation(built) == "fused"


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


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: resolve(["sgd", "nope"]), "unknown optimizer 'nope'; choose from: sgd, momentum"),
        (lambda: parse_overrides(["adam.lr"]), "write OPTIMIZER.PARAM=VALUE"),
        (lambda: resolve(["adam"], overrides={"adam": {"foo": "1"}}), "unknown hyperparameter adam.foo; adam has: lr"),
        (lambda: resolve(["adam"], overrides={"adam": {"lr": "fast"}}), "bad value 'fast' for adam.lr"),
        (lambda: resolve(["adam"], overrides={"adam": {"lr": "-1"}}), "must be > 0"),
        (lambda: resolve(["adam"], overrides={"sgd": {"lr": "1"}}), "not among --optimizers"),
        (lambda: resolve(["adam"], overrides={"adam": {"eps": "nan"}}), "finite"),
    ],
)
def test_user_errors_are_one_line(call, message):
    with pytest.raises(OptimizerError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", [name for name, info in REGISTRY.items() if info.gradient_free])
def test_every_gradient_free_entry_builds_its_evotorch_searcher_with_its_hyperparameters(name):
    """The registry's defaults reach the library: what `list-optimizers` shows is what runs."""
    from fmnist_pl.engine.search import make_search

    (spec,) = resolve([name])
    assert REGISTRY[name].cls.__module__.startswith("evotorch")
    problem, searcher = make_search(spec, (2,), torch.zeros(784 * 2 + 2 + 2 * 10 + 10), seed=0)
    assert type(searcher) is REGISTRY[name].cls
    if hasattr(searcher, "_distribution"):  # SNES, PGPE, CEM: the initial sigma is the registry's
        assert searcher._distribution.sigma.mean().item() == pytest.approx(spec.hparams["stdev_init"])
    problem.set_batch(torch.rand(8, 784), torch.randint(0, 10, (8,)))
    searcher.step()
    assert problem.evaluated >= spec.hparams["popsize"]


def test_lr_for_all_leaves_gradient_free_entries_alone():
    specs = {s.name: s for s in resolve(["adam", "snes"], lr=0.1)}
    assert specs["adam"].hparams["lr"] == 0.1 and "lr" not in specs["snes"].hparams


def test_check_buildable_builds_what_may_fail_and_skips_shipped_defaults(monkeypatch):
    """Changed hyperparameters and user-registered entries are built (their class may reject them);
    a shipped entry at its defaults is not (the tests above build those)."""
    built = []
    real_build = optimizers.OptimizerSpec.build
    monkeypatch.setattr(
        optimizers.OptimizerSpec, "build", lambda self, params: built.append(self.name) or real_build(self, params)
    )
    monkeypatch.setitem(
        REGISTRY, "picky", optimizers.OptimizerInfo("picky", "torch.optim:Adam", {"lr": 0.001, "betas": (0.9, 1.5)})
    )
    optimizers.check_buildable(resolve(["sgd", "adam", "momentum"]))
    assert built == []
    with pytest.raises(OptimizerError, match=r"^adam \(Adam\) rejects its hyperparameters: .*beta"):
        optimizers.check_buildable(resolve(["sgd", "adam"], overrides={"adam": {"betas": "0.9,1.5"}}))
    assert built == ["adam"]
    optimizers.check_buildable(resolve(["sgd"], lr=0.05))
    assert built == ["adam", "sgd"]
    with pytest.raises(OptimizerError, match=r"^picky \(Adam\) rejects its hyperparameters"):
        optimizers.check_buildable(resolve(["picky"]))
    # A shipped name registered again by a user is that user's entry: built.
    monkeypatch.setitem(
        REGISTRY, "sgd", optimizers.OptimizerInfo("sgd", "torch.optim:SGD", {"lr": 0.01, "nesterov": True})
    )
    with pytest.raises(OptimizerError, match=r"^sgd \(SGD\) rejects its hyperparameters: .*[Nn]esterov"):
        optimizers.check_buildable(resolve(["sgd"]))
