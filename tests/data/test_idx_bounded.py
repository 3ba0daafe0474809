"""IDX files are read header first, with bounded memory: a huge, long, short or absurd file is one DataError line."""

import gzip
import json
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

import fmnist_pl
from fmnist_pl.data.idx import IMAGE_MAGIC, LABEL_MAGIC, MAX_DATA_BYTES, DataError, read_idx
from tests.conftest import write_idx

IMAGE = 28 * 28


def _header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims)


def _write_long_gzip(path: Path) -> None:
    """A ~200 kB gzip holding one valid 28x28 image followed by ~200 MB of zeros that its header does not declare."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_header(IMAGE_MAGIC, 1, 28, 28) + bytes(IMAGE))
        for _ in range(200):
            f.write(bytes(1 << 20))


def _refusal(path: Path, magic: int, count: int | None = None) -> tuple[str, int]:
    """The DataError's text and the Python heap's peak while ``read_idx`` refused ``path``."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            read_idx(path, magic, count)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    text = str(info.value)
    assert "\n" not in text and str(path) in text and "re-install or re-download it" in text
    return text, peak


def test_good_files_read_like_torchvision(tmp_path):
    # 6,000 images are more than one read chunk, so the chunked read is exercised too
    images = np.random.default_rng(0).integers(0, 256, (6_000, 28, 28)).astype(np.uint8)
    labels = np.arange(6_000) % 10
    for compress in (False, True):
        img = read_idx(write_idx(tmp_path / f"img{compress}", images, IMAGE_MAGIC, compress), IMAGE_MAGIC, 6_000)
        lab = read_idx(write_idx(tmp_path / f"lab{compress}", labels, LABEL_MAGIC, compress), LABEL_MAGIC)
        assert img.dtype == torch.uint8 and img.shape == (6_000, 28, 28) and lab.shape == (6_000,)
        assert torch.equal(img, read_sn3_pascalvincent_tensor(str(tmp_path / "imgFalse")))
        assert torch.equal(lab, read_sn3_pascalvincent_tensor(str(tmp_path / "labFalse")))
    empty = tmp_path / "empty"
    empty.write_bytes(_header(LABEL_MAGIC, 0))
    assert read_idx(empty, LABEL_MAGIC).shape == (0,)


def test_sparse_terabyte_plain_file_is_refused_unread(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    with open(path, "wb") as f:
        f.write(_header(IMAGE_MAGIC, 1, 28, 28))
        f.truncate(10**12)  # sparse: costs no disk, and reading it whole would need a terabyte
    text, peak = _refusal(path, IMAGE_MAGIC)
    assert f"has {10**12 - 16} data bytes, expected {IMAGE} from its header: too long" in text
    assert peak < 1 << 20


def test_plain_file_a_few_bytes_too_long_is_not_called_truncated(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_header(LABEL_MAGIC, 5) + bytes(5 + 3))
    text, _ = _refusal(path, LABEL_MAGIC, 5)
    assert "has 8 data bytes, expected 5 from its header: too long" in text and "truncated" not in text


def test_gzip_longer_than_its_header_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _write_long_gzip(path)
    text, peak = _refusal(path, IMAGE_MAGIC)
    assert f"has at least {IMAGE + 1} data bytes, expected {IMAGE} from its header: too long" in text
    assert peak < 20 << 20


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak RSS from Linux's /proc")
def test_gzip_longer_than_its_header_is_refused_in_bounded_rss(tmp_path):
    """The same refusal, measured as the process's peak resident memory, which sees torch's buffers too.

    VmHWM, not ``ru_maxrss``: a child's ``ru_maxrss`` starts at the peak of the pytest process that spawned it.
    """
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _write_long_gzip(path)
    probe = f"""
import json
from pathlib import Path
import torch
from fmnist_pl.data.idx import DataError, IMAGE_MAGIC, read_idx
def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
before = peak_kib()
try:
    read_idx(Path({str(path)!r}), IMAGE_MAGIC)
    text = None
except DataError as exc:
    text = str(exc)
print(json.dumps({{"kib": peak_kib() - before, "text": text}}))
"""
    root = str(Path(fmnist_pl.__file__).parents[1])  # the package under test, wherever it is checked out
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["text"] is not None and "too long" in result["text"]
    assert result["kib"] < 50 * 1024, result  # reading the 200 MB whole grows the peak by 200 MB or more


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_payload_is_called_truncated(tmp_path, compress):
    data = _header(IMAGE_MAGIC, 2, 28, 28) + bytes(2 * IMAGE - 100)
    path = tmp_path / ("short.gz" if compress else "short")
    path.write_bytes(gzip.compress(data) if compress else data)
    text, _ = _refusal(path, IMAGE_MAGIC, 2)
    assert f"has {2 * IMAGE - 100} data bytes, expected {2 * IMAGE}: truncated" in text and "too long" not in text


@pytest.mark.parametrize("compress", [False, True])
def test_absurd_header_is_refused_from_the_header_alone(tmp_path, compress):
    n = 2**31
    path = tmp_path / ("huge.gz" if compress else "huge")
    if compress:  # just the header: a reader that allocated or read first would say "truncated"
        path.write_bytes(gzip.compress(_header(IMAGE_MAGIC, n, 28, 28)))
    else:  # a sparse file exactly as long as its header says: only the bound on the header refuses it
        with open(path, "wb") as f:
            f.write(_header(IMAGE_MAGIC, n, 28, 28))
            f.truncate(16 + n * IMAGE)
    text, peak = _refusal(path, IMAGE_MAGIC)
    assert f"header declaring {n}x28x28 = {n * IMAGE} data bytes, over the {MAX_DATA_BYTES}" in text
    assert peak < 1 << 20


def test_images_that_are_not_28x28_are_refused_from_the_header(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(_header(IMAGE_MAGIC, 3, 32, 32))  # no pixels at all: the header decides
    with pytest.raises(DataError, match=r"holds \(32, 32\) images, expected 28x28: wrong file; re-install it"):
        read_idx(path, IMAGE_MAGIC)


# zlib.error from the deflate stream, or BadGzipFile from the trailer once the exact payload has been read
@pytest.mark.parametrize(("at", "why"), [(10, "invalid block type"), (40, "CRC check failed")])
def test_corrupt_gzip_is_a_data_error(tmp_path, at, why):
    raw = bytearray(gzip.compress(_header(LABEL_MAGIC, 1024) + bytes(range(256)) * 4, compresslevel=0))
    raw[at : at + 4] = b"\xff" * 4
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"cannot read .*labels\.gz: .*{why}.* \(corrupt or truncated\?\)"):
        read_idx(path, LABEL_MAGIC)
