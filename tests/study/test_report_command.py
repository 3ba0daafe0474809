"""``fmnist-pl report``: a file system that refuses the writes is one line, as in a compare; a
sweep's top folder points at its comparison."""

import errno

import pytest

from fmnist_pl import store
from fmnist_pl.errors import ResultsError
from fmnist_pl.store.lock import exclusive
from fmnist_pl.study.compare import report
from tests.report.test_report import make_results


@pytest.mark.parametrize(
    "code, reason", [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left on device")]
)
def test_a_folder_that_refuses_writes_is_one_line(tmp_path, monkeypatch, code, reason):
    folder = make_results(tmp_path / "c", ["sgd", "adam"])

    def refuse(path, write):
        raise OSError(code, reason, str(path))

    monkeypatch.setattr(store.io, "atomic_write", refuse)
    with pytest.raises(ResultsError, match=f"cannot write the report into {folder} \\({reason}\\)") as info:
        report(folder)
    assert "\n" not in str(info.value) and f"fmnist-pl report {folder}" in str(info.value)


def test_a_sweeps_folder_names_its_final_comparison(tmp_path):
    with exclusive(tmp_path / "S", "sweep"):
        pass
    with pytest.raises(ResultsError, match="is a sweep's folder; its comparison at the chosen rates is .*/S/final"):
        report(tmp_path / "S")
