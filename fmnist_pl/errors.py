"""Every error fmnist-pl raises on purpose, in one place, so that each layer can raise them
without importing another layer, and the command line can tell a user's mistake (one line,
exit 2) from a failure of ours (exit 1) and a stop (130/143)."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path


class ConfigError(ValueError):
    """A user-caused bad setting; the message names the value and the fix."""


class DataError(ValueError):
    """The data cannot be found or read; the message names the file and the fix."""


class OptimizerError(ValueError):
    """A user-caused problem with an optimizer name or hyperparameter (one line, says the fix)."""


class ResultsError(ValueError):
    """A results folder or file that cannot be used; the message names the file, the field and what to do."""


# What a user can cause and fix: the command line prints the message and exits 2.
USER_ERRORS = (ConfigError, DataError, OptimizerError, ResultsError)


class GroupFailed(Exception):
    """A unit of work raised in our code on a worker: the study stops once (no retry loop).

    Not a user's bad input: the CLI prints the one line and exits 1; the traceback is in
    ``errors.log`` of the output folder (and was printed above).
    """


def resume_command(folder: Path, *extra: str) -> str:
    """``fmnist-pl compare --resume FOLDER ...``, shell-quoted so that it can be pasted as printed."""
    return shlex.join(["fmnist-pl", "compare", "--resume", str(folder), *extra])


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the compare; finished results and the last epoch checkpoint are kept."""

    def __init__(self, folder: Path, signum: int = signal.SIGINT, how: str | None = None, started: bool = True) -> None:
        how = how or resume_command(folder)
        text = (
            f"interrupted; finished results are in {folder}. Continue with: {how}"
            if started
            else f"interrupted before the compare started; nothing was kept in {folder}"
        )
        super().__init__(text)
        self.folder, self.signum, self.started = folder, signum, started

    @property
    def exit_code(self) -> int:
        """130 for SIGINT (Ctrl-C), 143 for SIGTERM: what a shell reports for a process those signals end."""
        return 128 + self.signum
