"""Fashion-MNIST files: where they are and how to read them safely (no torch needed to look).

Kept apart from :mod:`fmnist_pl.data.datamodule` (which needs Lightning) so that the CLI can check a
data folder, and fail on a bad one, in milliseconds.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fmnist_pl.errors import DataError

if TYPE_CHECKING:
    import torch

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EXPECTED_COUNT = {"train": 60_000, "test": 10_000}
VAL_SIZE = 5_000  # the reference's split: X_valid = X_train_full[:5000]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x0000 | 0x08 (uint8) | ndim
# No real IDX file of this kind is near this (Fashion-MNIST's largest is 47 MB): a header declaring more is
# corrupt, and is refused before anything is allocated or read.
MAX_DATA_BYTES = 1 << 30
_CHUNK = 1 << 22  # bytes read (decompressed) per call: bounds the memory a read needs beyond its result
HOW_TO_GET = (
    "install it with `sudo apt-get install dataset-fashion-mnist`, pass --data-dir DIR "
    "(or set FMNIST_DATA) pointing at the four *-idx?-ubyte(.gz) files, or add --download when online"
)


def _candidates(folder: Path, stem: str) -> list[Path]:
    """Every copy of one IDX file in ``folder``, in the order they are tried (gzipped first)."""
    return [
        c
        for c in (
            folder / f"{stem}.gz",
            folder / stem,
            folder / "FashionMNIST" / "raw" / stem,
            folder / "FashionMNIST" / "raw" / f"{stem}.gz",
        )
        if c.is_file()
    ]


def _find_file(folder: Path, stem: str) -> Path | None:
    found = _candidates(folder, stem)
    return found[0] if found else None


def _read_first_good(folder: Path, stem: str, magic: int, count: int | None) -> tuple[Path, torch.Tensor]:
    """Read the first copy of ``stem`` that reads: a corrupt ``x.gz`` beside a good ``x`` is passed over."""
    errors: list[DataError] = []
    for path in _candidates(folder, stem):
        try:
            return path, read_idx(path, magic, count)
        except DataError as exc:
            errors.append(exc)
    if not errors:
        raise DataError(f"{folder} lacks {stem}.gz; {HOW_TO_GET}")
    if len(errors) == 1:
        raise errors[0]
    reasons = " / ".join(str(e).split("; ")[0] for e in errors)
    raise DataError(f"no readable copy of {stem} in {folder}: {reasons}; re-install or re-download it")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder to read, in the documented order: ``data_dir``, ``$FMNIST_DATA``, the Debian package.

    Returns ``None`` when none of them is given or present (the caller may then download).
    An explicitly given folder that does not exist is an error, never silently skipped.
    """
    for source, value in (("--data-dir", data_dir), ("FMNIST_DATA", os.environ.get("FMNIST_DATA"))):
        if value:
            path = Path(value).expanduser()
            try:
                os.stat(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # a name too long, a loop of links, no permission: said in one line
                raise DataError(
                    f"data folder {str(path)[:80]!r}... (from {source}) cannot be used ({exc.strerror}); {HOW_TO_GET}"
                ) from None
            if path.exists() and not path.is_dir():
                raise DataError(
                    f"data folder {str(path)!r} (from {source}) is a file, not a folder; pass the "
                    "folder that holds the four *-idx?-ubyte(.gz) files"
                )
            if not path.is_dir():
                raise DataError(f"data folder {str(path)!r} (from {source}) does not exist; {HOW_TO_GET}")
            return path
    return DEBIAN_DIR if DEBIAN_DIR.is_dir() else None


def _read_into(fh: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``fh`` in bounded reads, so that a gzip never decompresses more than a chunk at once.

    Returns the number of bytes read: fewer than ``len(view)`` only at the end of the file.
    """
    pos = 0
    while pos < len(view):
        n = fh.readinto(view[pos : pos + _CHUNK])
        if not n:
            break
        pos += n
    return pos


def _check_header(path: Path, magic: int, count: int | None, fh: BinaryIO) -> tuple[tuple[int, ...], int]:
    """Read and check the IDX header alone: ``(dims, data bytes)``, refusing what no good file declares."""
    ndim = magic & 0xFF
    head = bytearray(4 + 4 * ndim)
    got = _read_into(fh, memoryview(head))
    if got >= 4 and (found := struct.unpack(">I", head[:4])[0]) != magic:
        raise DataError(f"{path} has IDX magic {found}, expected {magic}: wrong or corrupt file; re-install it")
    if got < len(head):
        raise DataError(f"{path} is truncated ({got} bytes, no IDX header); re-install or re-download it")
    dims = struct.unpack(f">{ndim}I", head[4:])
    if count is not None and dims[0] != count:
        raise DataError(f"{path} holds {dims[0]} items, expected {count}: wrong file; re-install it")
    if magic == IMAGE_MAGIC and dims[1:] != (28, 28):
        raise DataError(f"{path} holds {dims[1:]} images, expected 28x28: wrong file; re-install it")
    size = math.prod(dims)
    if size > MAX_DATA_BYTES:
        raise DataError(
            f"{path} has a header declaring {'x'.join(map(str, dims))} = {size} data bytes, over the "
            f"{MAX_DATA_BYTES} fmnist-pl reads: corrupt or wrong file; re-install or re-download it"
        )
    return dims, size


def _wrong_length(path: Path, found: int, size: int, exact: bool = True) -> DataError:
    """The one-line error for a payload that is not the ``size`` bytes its header declares."""
    if found < size:
        return DataError(f"{path} has {found} data bytes, expected {size}: truncated; re-install or re-download it")
    return DataError(
        f"{path} has {'' if exact else 'at least '}{found} data bytes, expected {size} from its header: too long "
        "(extra bytes after the data, or not this file); re-install or re-download it"
    )


def read_idx(path: Path, magic: int, count: int | None = None) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a uint8 tensor, checking everything a bad file breaks.

    Equivalent to torchvision's ``read_sn3_pascalvincent_tensor`` for uint8 files, but every
    failure (truncated gzip, wrong magic, wrong count, short or long payload) is a :class:`DataError`
    that names the file, instead of a crash deep inside training. The header is checked before
    the data is read, and no more than the header's size plus one byte is ever read, so a huge or
    corrupt file costs bounded memory and time.
    """
    import torch

    is_gzip = path.suffix == ".gz"
    try:
        with gzip.open(path, "rb") if is_gzip else open(path, "rb", buffering=0) as fh:
            dims, size = _check_header(path, magic, count, fh)
            if not is_gzip and stat.S_ISREG((st := os.fstat(fh.fileno())).st_mode):
                if st.st_size - fh.tell() != size:  # told by the file's size: nothing is read
                    raise _wrong_length(path, st.st_size - fh.tell(), size)
            out = torch.empty(size, dtype=torch.uint8)  # pages untouched until read: a lying gzip costs what it holds
            found = _read_into(fh, memoryview(out.numpy())) if size else 0
            if found == size and fh.read(1):  # one byte past the header's size is enough to tell; also checks the CRC
                found += 1
            if found != size:
                raise _wrong_length(path, found, size, exact=False)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc} (corrupt or truncated?); re-install or re-download it") from None
    return out.reshape(dims)


@dataclass
class FashionMNISTArrays:
    """The raw dataset as four uint8 tensors (images N×28×28, labels N)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def load_arrays(folder: Path, counts: dict[str, int] | None = EXPECTED_COUNT) -> FashionMNISTArrays:
    """Read and validate the four files in ``folder``.

    ``counts`` are the expected numbers of items per split (Fashion-MNIST's 60,000/10,000);
    ``None`` accepts any, for small generated test data.
    """
    arrays = {}
    for key, stem in FILES.items():
        split = key.split("_")[0]
        is_images = key.endswith("images")
        _, arrays[key] = _read_first_good(  # read_idx checks images are 28x28, from the header
            folder, stem, IMAGE_MAGIC if is_images else LABEL_MAGIC, counts[split] if counts else None
        )
    for split in ("train", "test"):
        labels = arrays[f"{split}_labels"]
        if len(labels) != len(arrays[f"{split}_images"]):
            raise DataError(
                f"{folder}: {len(arrays[split + '_images'])} {split} images but {len(labels)} labels; "
                "mismatched files, re-install them"
            )
        if int(labels.max()) >= len(CLASS_NAMES):
            raise DataError(f"{folder / FILES[split + '_labels']} has label {int(labels.max())} outside 0..9: corrupt")
    return FashionMNISTArrays(**arrays)


def download(root: Path) -> Path:
    """Fetch the dataset with torchvision (online only) and return the folder of its raw files."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except Exception as exc:  # noqa: BLE001 - any network failure becomes one actionable line
        raise DataError(f"download into {root} failed ({type(exc).__name__}); {HOW_TO_GET}") from None
    return root / "FashionMNIST" / "raw"


def locate(
    data_dir: str | os.PathLike | None = None, allow_download: bool = False, download_root: Path = Path("data")
) -> Path:
    """The folder to read the dataset from, downloading it only if asked and nothing local exists."""
    folder = resolve_data_dir(data_dir)
    if folder is not None:
        return folder
    if allow_download:
        return download(download_root)
    raise DataError(f"Fashion-MNIST not found (no --data-dir, no FMNIST_DATA, no {DEBIAN_DIR}); {HOW_TO_GET}")


def check_data_dir(folder: Path) -> None:
    """Cheap pre-flight check (every file present) so a bad folder fails before any training."""
    missing = [f"{stem}.gz" for stem in FILES.values() if _find_file(folder, stem) is None]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}; {HOW_TO_GET}")
