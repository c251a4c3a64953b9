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


class ContentMissingError(InputError):
    """An input file is listed but its content is not on this machine (a broken symbolic link,
    a git-annex/DataLad file that was not fetched)."""

    exit_code = 66  # EX_NOINPUT


class RunAborted(BaseException):  # noqa: N818 - it is not an error of its own
    """Stops a whole run from inside a step that runs in the main process, carrying the
    :class:`SynthbidsError` to report (``error``).

    Nipype catches every ``Exception`` of a step and goes on with the others; a full or
    read-only output folder fails every step after it, so the run stops at once instead, with
    the one-line message and exit code of ``error``. Like ``KeyboardInterrupt`` it derives from
    ``BaseException`` so that Nipype lets it through."""

    def __init__(self, error: SynthbidsError):
        super().__init__(str(error))
        self.error = error
