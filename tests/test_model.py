import math
import os

import lightning.pytorch as pl
import pytest
import torch

from fmnist_pl.data import FashionMNISTDataModule
from fmnist_pl.idx import load_arrays
from fmnist_pl.model import MLP, EnsembleMLP, LitClassifier, LitLockstep, parameter_count, seeded_mlp
from fmnist_pl.keras_rmsprop import KerasRMSprop
from fmnist_pl.optimizers import resolve


def test_parameter_count_is_the_references():
    assert parameter_count((300, 100)) == 266_610
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


def test_ensemble_forward_and_gradients_equal_separate_models():
    torch.manual_seed(0)
    members = [seeded_mlp((30, 20), s) for s in (1, 2, 1, 2)]  # 2 seed groups x 2 members
    for m in members:  # non-zero biases so that their layout is exercised too
        for layer in m.linears():
            torch.nn.init.uniform_(layer.bias, -0.1, 0.1)
    net = EnsembleMLP(members, groups=2)
    x = torch.rand(2, 7, 784)
    logits = net(x)  # [K, C, B]
    assert logits.shape == (4, 10, 7)
    group_of = [0, 0, 1, 1]
    for k, m in enumerate(members):
        torch.testing.assert_close(logits[k].T, m(x[group_of[k]]), rtol=1e-5, atol=1e-5)
    y = torch.randint(0, 10, (7,))
    torch.nn.functional.cross_entropy(logits, y.expand(4, 7), reduction="none").mean(1).sum().backward()
    for k, m in enumerate(members):
        torch.nn.functional.cross_entropy(m(x[group_of[k]]), y).backward()
        torch.testing.assert_close(net.weights[0].grad[k], m.linears()[0].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(net.biases[2].grad[k], m.linears()[2].bias.grad, rtol=1e-4, atol=1e-6)
        assert net.member_state_dict(k).keys() == m.state_dict().keys()


class EpochMetrics(pl.Callback):
    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, module):
        m = trainer.callback_metrics
        self.rows.append({k: float(m[f"{k.split('_')[0]}/{k.split('_')[1]}"])
                          for k in ("train_loss", "train_acc", "val_loss", "val_acc")})


def _trainer(**kw):
    # CPU in CI; the GPU check script sets FMNIST_TEST_ACCELERATOR=gpu to run the same test there.
    return pl.Trainer(max_epochs=2, accelerator=os.environ.get("FMNIST_TEST_ACCELERATOR", "cpu"), logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


@pytest.mark.parametrize("compile_fused", [False, True], ids=["foreach", "compiled"])
def test_lockstep_matches_the_straightforward_lightning_path(fake_data, compile_fused):
    """The fast engine's per-epoch metrics equal one LitClassifier per optimizer, same seed.

    ``compiled``: RMSprop's update as one torch.compile-d kernel, what long CPU runs use.
    """
    arrays = load_arrays(fake_data, counts=None)
    specs = resolve(["sgd", "momentum", "rmsprop", "adam"])
    seed, hidden = 7, (32, 16)
    members = [{"run": s.name, "optimizer": s.to_dict(), "seed": seed} for s in specs]
    lock = LitLockstep(members, hidden=hidden, compile_fused=compile_fused)
    trainer = _trainer()
    trainer.fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[seed]))
    (rms,) = [o for o in trainer.optimizers if isinstance(o, KerasRMSprop)]
    # The path under test really ran (the compiled kernel is CPU-only; on a GPU, foreach in a CUDA graph).
    assert rms.fused_ran is (compile_fused and trainer.strategy.root_device.type == "cpu")
    for k, spec in enumerate(specs):
        single = LitClassifier(spec.to_dict(), hidden=hidden, seed=seed)
        cb = EpochMetrics()
        _trainer(callbacks=[cb]).fit(single, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[seed]))
        fast = lock.histories[k].epochs
        assert len(fast) == len(cb.rows) == 2
        for a, b in zip(fast, cb.rows):
            for key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (spec.name, key)
    assert lock.histories[3].epochs[-1]["val_acc"] > 0.5  # it learned the fake data


def test_divergence_stops_only_that_run(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    specs = resolve(["sgd", "adam"], overrides={"sgd": {"lr": "1e6"}})
    members = [{"run": s.name, "optimizer": s.to_dict(), "seed": 1} for s in specs]
    lock = LitLockstep(members, hidden=(32,))
    _trainer().fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[1]))
    sgd, adam = lock.histories
    assert sgd.status == "diverged" and sgd.diverged_epoch == 1
    assert adam.status == "ok" and len(adam.epochs) == 2 and math.isfinite(adam.epochs[-1]["val_loss"])


def test_flush_denormals_reaches_the_worker_threads():
    from fmnist_pl.denormals import flush_denormals

    tiny = torch.full((1 << 16,), 1e-39)  # denormal; a parallel op spreads it over all threads
    try:
        if not flush_denormals(True):
            pytest.skip("this CPU cannot flush denormals")
        assert torch.count_nonzero(tiny * 1.0) == 0  # flushed on every chunk, not only the main thread's
    finally:
        flush_denormals(False)
    assert torch.count_nonzero(tiny * 1.0) == tiny.numel()


def test_freed_memory_is_kept_while_training_and_returned_after():
    import resource

    from fmnist_pl.heap import retain_freed_memory

    def faults_per_round(rounds: int = 4) -> float:
        # 64 MB: above glibc's largest dynamic mmap threshold, so by default every round maps fresh pages.
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            torch.ones(16 << 20)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / rounds

    with retain_freed_memory() as applied:
        if not applied:
            pytest.skip("this C library has no mallopt")
        faults_per_round(3)  # the heap grows to hold it
        kept = faults_per_round()
    returned = faults_per_round()
    pages = (64 << 20) / resource.getpagesize()
    assert kept < 0.05 * pages  # reused: no page faults
    assert returned > 0.5 * pages  # defaults back: each round faults its pages in again
