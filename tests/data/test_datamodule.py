"""The reference split and its batches: seeded shuffles, one stream per seed, plain or stacked."""

import torch

from fmnist_pl.data.datamodule import FashionMNISTDataModule
from fmnist_pl.data.idx import load_arrays


def test_split_is_the_reference_split(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    dm = FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[1])
    dm.prepare()
    (tx, ty), (vx, _), (sx, _) = dm.splits["train"], dm.splits["val"], dm.splits["test"]
    assert (len(tx), len(vx), len(sx)) == (500, 100, 200)
    # validation = the FIRST images of the training file, pixels / 255
    assert torch.equal(vx[0], arrays.train_images[0].flatten().float() / 255)
    assert torch.equal(ty, arrays.train_labels[100:].long())
    assert 0.0 <= float(tx.min()) and float(tx.max()) <= 1.0


def test_batches_are_seeded_shuffles_with_a_partial_last_batch(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    dm = FashionMNISTDataModule(arrays=arrays, val_size=100, batch_size=32, seeds=[1, 2])
    dm.prepare()
    batches = list(dm.train_dataloader())
    assert len(batches) == 16  # ceil(500 / 32), last one partial like Keras
    assert batches[0][0].shape == (2, 32, 784) and batches[-1][0].shape == (2, 500 - 15 * 32, 784)
    labels = torch.cat([y for _, y in batches], dim=1)
    assert sorted(labels[0].tolist()) == sorted(dm.splits["train"][1].tolist())  # every image once
    assert not torch.equal(labels[0], labels[1])  # two seeds, two orders
    again = FashionMNISTDataModule(arrays=arrays, val_size=100, batch_size=32, seeds=[1])
    again.prepare()
    first = next(iter(again.train_dataloader()))[1][0]
    assert torch.equal(first, batches[0][1][0])  # seed 1's order does not depend on what runs beside it
    # Each image comes with its own label: the rows of seed s's CPU permutation, stacked per seed.
    (tx, ty) = dm.splits["train"]
    for g, seed in enumerate([1, 2]):
        perm = torch.randperm(500, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(batches[1][0][g], tx[perm[32:64]]) and torch.equal(batches[1][1][g], ty[perm[32:64]])


def test_plain_batches_for_one_seed_and_plain_evaluation_batches(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    stacked = FashionMNISTDataModule(arrays=arrays, val_size=100, batch_size=32, seeds=[7])
    plain = FashionMNISTDataModule(arrays=arrays, val_size=100, batch_size=32, seeds=[7], stack_seeds=False)
    (xs, ys), (xp, yp) = next(iter(stacked.train_dataloader())), next(iter(plain.train_dataloader()))
    assert xs.shape == (1, 32, 784) and xp.shape == (32, 784) and yp.shape == (32,)
    assert torch.equal(xs[0], xp) and torch.equal(ys[0], yp)  # the same seed, the same batch
    vx, vy = next(iter(stacked.val_dataloader()))
    assert vx.shape == (100, 784) and vy.shape == (100,)  # evaluation batches are plain for every module


def test_plain_batches_need_exactly_one_seed(fake_data):
    import pytest

    dm = FashionMNISTDataModule(
        arrays=load_arrays(fake_data, counts=None), val_size=100, seeds=[1, 2], stack_seeds=False
    )
    with pytest.raises(ValueError, match="exactly one seed"):
        dm.train_dataloader()


def test_batches_already_on_the_device_skip_lightnings_transfer(fake_data):
    dm = FashionMNISTDataModule(arrays=load_arrays(fake_data, counts=None), val_size=100, seeds=[1])
    batch = next(iter(dm.train_dataloader()))
    assert dm.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)  # elsewhere: Lightning moves it
    assert moved is not batch and all(t.device.type == "meta" for t in moved)
