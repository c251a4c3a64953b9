"""Exceptions that the CLIs turn into one-line messages and non-zero exit codes."""

from __future__ import annotations

import os


class SynthbidsError(Exception):
    """Base class: ``str(err)`` is a complete, single-line message for the user."""

    exit_code = 1


class UsageError(SynthbidsError):
    """Options that do not go together or are missing (exit 2, as argparse's own errors)."""

    exit_code = 2


class InputError(SynthbidsError):
    """An input file cannot be used; the message names the file and the problem."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if path is None else f'{self.path}: {problem}')


class OutputError(SynthbidsError):
    """An output location cannot be written."""

    exit_code = 73  # EX_CANTCREAT

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f'{self.path}: {problem}')


class WeightsError(SynthbidsError):
    """Model weights are missing, corrupt or of the wrong kind."""

    exit_code = 66  # EX_NOINPUT

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        super().__init__(message if path is None else f'{self.path}: {message}')
