"""Bad input through the real CLI: one line on stderr, exit code 2, nothing written. And the help:
every word of every option's help text shown, readable metavars, ``--version``."""

import pytest
import typer
from typer.testing import CliRunner

from fmnist_pl import __version__
from fmnist_pl.cli import app
from tests.conftest import make_dataset, run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["compare", "--optimizers", "sgd,adamm"],
            "unknown optimizer 'adamm'; choose from: sgd, momentum, rmsprop, adam",
        ),
        (["compare", "--set", "adam.foo=1"], "unknown hyperparameter adam.foo"),
        (["compare", "--set", "adam.lr=fast"], "bad value 'fast' for adam.lr"),
        (["compare", "--set", "adamlr"], "write OPTIMIZER.PARAM=VALUE"),
        (["compare", "--epochs", "0"], "--epochs must be a whole number >= 1"),
        (["compare", "--epochs", "ten"], "Invalid value for '--epochs'"),
        (["compare", "--batch-size", "-3"], "--batch-size must be a whole number >= 1"),
        (["compare", "--lr", "0"], "--lr must be a number > 0"),
        (["sweep", "--lrs", "0.01,0.01"], "planned more than once"),
        (["sweep", "--lrs", "0.1,1", "--hidden", "300,x"], "--hidden must be comma-separated"),
        (["compare", "--lr", "abc"], "Invalid value for '--lr'"),
        (["compare", "--batch-size", "x"], "Invalid value for '--batch-size'"),
        (["compare", "--target", "1.5"], "--target must be a validation accuracy"),
        (["sweep", "--lrs", "1e-3:1:1"], "--lrs must be START:STOP:COUNT"),
        (["sweep"], "sweep needs --lrs"),
        (["compare", "--seeds", "0"], "--seeds must be a whole number >= 1"),
        (["compare", "--hidden", "300,x"], "--hidden must be comma-separated"),
        (["compare", "--data-dir", "/no/such/dir"], "does not exist"),
        (["compare", "--accelerator", "tpu9"], "--accelerator must be one of"),
        (["report", "."], "holds no fmnist-pl results"),
        (["compare", "--bogus"], "No such option"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    proc = (
        run_cli(*args, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
        if args[0] != "report"
        else run_cli(*args, cwd=tmp_path)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_data_folder_problems_name_the_file(tmp_path):
    folder = make_dataset(tmp_path / "d", n_train=20, n_test=10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    proc = run_cli("compare", "--data-dir", str(folder), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "lacks t10k-labels-idx1-ubyte.gz" in proc.stderr
    folder = make_dataset(tmp_path / "w", n_train=20, n_test=10)
    (folder / "train-images-idx3-ubyte.gz").write_bytes((folder / "train-labels-idx1-ubyte.gz").read_bytes())
    proc = run_cli("compare", "--data-dir", str(folder), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "train-images-idx3-ubyte.gz has IDX magic 2049, expected 2051" in proc.stderr
    folder = make_dataset(tmp_path / "e", n_train=20, n_test=10)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    proc = run_cli("compare", "--data-dir", str(folder), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "train-images-idx3-ubyte.gz" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    folder = make_dataset(tmp_path / "d", n_train=20, n_test=10)
    proc = run_cli("compare", "--data-dir", str(folder), "--output-dir", str(blocker), cwd=tmp_path)
    assert proc.returncode == 2 and "cannot write to output folder" in proc.stderr, proc.stderr


def test_help_and_list_optimizers(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0 and "compare" in proc.stdout and "report" in proc.stdout
    # compare and sweep declare their shared options once: the same names, the same help.
    compare_help, sweep_help = (
        run_cli(cmd, "--help", cwd=tmp_path, env={"COLUMNS": "200"}).stdout for cmd in ("compare", "sweep")
    )
    for option in ("--download", "--target", "--separate", "--hidden", "--seeds", "--data-dir", "--set"):
        assert option in compare_help and option in sweep_help, option
    proc = run_cli("list-optimizers", cwd=tmp_path)
    assert proc.returncode == 0 and "rmsprop        KerasRMSprop" in proc.stdout and "eps=1e-07" in proc.stdout


# ------------------------------------------------------------------ help texts
COMMANDS = ["compare", "sweep", "report", "list-optimizers"]


def rendered_help(*command: str) -> str:
    """``fmnist-pl [COMMAND] --help`` in-process, wide enough that Rich wraps only at spaces."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def flat(text: str) -> str:
    """Text as words: the panels' borders gone, line wrapping and column padding collapsed to single spaces."""
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("command", [None, *COMMANDS], ids=["app", *COMMANDS])
def test_help_shows_every_word_of_every_help_text(command):
    # Rich reads "[word ...]" as markup and drops it: "[default: a timestamp]" once vanished this way.
    group = typer.main.get_command(app)
    cmd = group if command is None else group.commands[command]
    shown = flat(rendered_help(*([command] if command else [])))
    expected = [cmd.help] if cmd.help else []
    for param in cmd.params:
        expected.append(param.help)
        if isinstance(param.show_default, str):  # a default described in words, e.g. "a timestamp"
            expected.append(f"[default: ({param.show_default})]")
        if param.metavar:
            expected.append(param.metavar)
    assert cmd.params or command == "list-optimizers"
    for text in expected:
        assert flat(text) in shown, f"{command} --help lost words of: {text!r}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_option_values_readably(command):
    shown = rendered_help(command)
    assert "<list[" not in shown and "<str>" not in shown and "<int>" not in shown
    if command in ("compare", "sweep"):
        assert "--set OPT.PARAM=VALUE" in flat(shown) and "--hidden SIZES" in flat(shown)
        assert "--data-dir DIR" in flat(shown) and "--ray ADDRESS" in flat(shown)


def test_sweep_and_compare_each_describe_their_own_epochs_default():
    compare_help, sweep_help = flat(rendered_help("compare")), flat(rendered_help("sweep"))
    assert "reference's. [default: 30]" in compare_help
    assert "unless --final-epochs is given. [default: 10]" in sweep_help
    assert "reference" not in sweep_help.split("--epochs N", 1)[1].split("[default: 10]", 1)[0]


def test_version_prints_the_package_version_and_exits_0(tmp_path):
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"fmnist-pl {__version__}\n"
    proc = run_cli("--version", "compare", "--epochs", "0", cwd=tmp_path)  # eager: before the command is parsed
    assert proc.returncode == 0 and proc.stdout == f"fmnist-pl {__version__}\n" and not proc.stderr, proc.stderr
