import gzip

import numpy as np
import pytest
import torch

from fmnist_pl.data.idx import FILES, IMAGE_MAGIC, LABEL_MAGIC, DataError, load_arrays, locate, read_idx
from tests.conftest import make_dataset, write_idx


def test_read_roundtrip_gz_and_plain(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    for compress in (True, False):
        path = write_idx(tmp_path / f"x{compress}", images, IMAGE_MAGIC, compress=compress)
        out = read_idx(path, IMAGE_MAGIC, 3)
        assert out.dtype == torch.uint8 and out.shape == (3, 28, 28)
        assert torch.equal(out, torch.from_numpy(images.astype(np.uint8)))


def test_wrong_magic_names_the_file(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros(5), LABEL_MAGIC)
    with pytest.raises(DataError, match=r"labels\.gz has IDX magic 2049, expected 2051"):
        read_idx(path, IMAGE_MAGIC)


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = write_idx(tmp_path / "img", np.zeros((10, 28, 28)), IMAGE_MAGIC)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(path, IMAGE_MAGIC)


def test_short_payload_and_wrong_count(tmp_path):
    path = tmp_path / "img"
    raw = gzip.decompress(write_idx(path, np.zeros((10, 28, 28)), IMAGE_MAGIC).read_bytes())
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(short, IMAGE_MAGIC)
    with pytest.raises(DataError, match="holds 10 items, expected 60000"):
        read_idx(tmp_path / "img.gz", IMAGE_MAGIC, 60000)


def test_missing_file_and_bad_labels(tmp_path):
    folder = make_dataset(tmp_path / "d", n_train=20, n_test=10)
    with pytest.raises(DataError, match="holds 20 items, expected 60000"):
        load_arrays(folder)  # the real counts are enforced by default
    write_idx(folder / FILES["test_labels"], np.full(10, 12), LABEL_MAGIC)
    with pytest.raises(DataError, match="label 12 outside 0..9"):
        load_arrays(folder, counts=None)
    (folder / f"{FILES['train_images']}.gz").unlink()
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte.gz"):
        load_arrays(folder, counts=None)


def test_locate_order(tmp_path, monkeypatch):
    a, b = make_dataset(tmp_path / "a", 20, 10), make_dataset(tmp_path / "b", 20, 10)
    monkeypatch.setenv("FMNIST_DATA", str(b))
    assert locate(a) == a  # --data-dir wins
    assert locate(None) == b  # then $FMNIST_DATA
    with pytest.raises(DataError, match="does not exist"):
        locate(tmp_path / "nope")


def test_a_corrupt_gz_beside_a_good_plain_file_reads_the_good_one(tmp_path):
    folder = make_dataset(tmp_path / "d", n_train=20, n_test=10)
    good = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
    (folder / "train-images-idx3-ubyte").write_bytes(good)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    arrays = load_arrays(folder, counts=None)  # the plain copy reads
    assert arrays.train_images.shape == (20, 28, 28)
    (folder / "train-images-idx3-ubyte").write_bytes(good[:100])
    with pytest.raises(DataError, match="no readable copy of train-images-idx3-ubyte in .*gz.* / .*truncated"):
        load_arrays(folder, counts=None)  # neither reads: both named
