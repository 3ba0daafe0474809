"""The engine's import runs with the garbage collector paused, then frozen (fmnist_pl.runtime.imports)."""

import gc
import sys

import pytest

from fmnist_pl.runtime import imports


@pytest.fixture
def freezes(monkeypatch):
    """Count gc.freeze calls instead of freezing this test process's objects."""
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(1))
    return calls


def test_the_collector_is_paused_inside_and_restored_after(freezes):
    assert gc.isenabled()
    with imports.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled() and len(freezes) == 1


def test_a_caller_that_turned_the_collector_off_keeps_it_off(freezes):
    gc.disable()
    try:
        with imports.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_import_that_fails_still_gives_the_collector_back(freezes):
    with pytest.raises(ImportError):
        with imports.collector_paused():
            import fmnist_pl_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_the_engine_is_imported_with_the_collector_paused_once(tmp_path, monkeypatch, freezes):
    (tmp_path / "engine_probe.py").write_text("import gc\nCOLLECTING = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(imports, "ENGINE", ("engine_probe",))
    monkeypatch.delitem(sys.modules, "engine_probe", raising=False)
    imports.import_engine()
    assert sys.modules["engine_probe"].COLLECTING is False  # imported while paused
    assert gc.isenabled() and len(freezes) == 1
    # Imported already: nothing frozen again (a Ray worker's next task must not pin the last one's garbage).
    imports.import_engine()
    assert len(freezes) == 1


def test_freeze_at_exit_registers_one_handler_per_process(monkeypatch):
    import atexit

    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(imports, "_freezes_at_exit", False)
    imports.freeze_at_exit()
    imports.freeze_at_exit()
    assert registered == [gc.freeze]
