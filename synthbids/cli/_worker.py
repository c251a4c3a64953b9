"""What runs in the fork server and the worker processes of
:class:`~synthbids.cli.supervise.SupervisedMultiProcPlugin`: tying their lives to the main
process, and a note of the node a worker runs.

The module is light (no numpy, no Nipype at import): the fork server imports it before it
serves anyone, and a worker arms its parent-death signal before it imports anything heavy.

* **Fork server.** synthbids starts multiprocessing's fork server with this module preloaded
  and ``$SYNTHBIDS_SUPERVISOR_PID`` set to its own pid (:func:`~synthbids.cli.supervise.
  start_forkserver`); the import arms the fork server's parent-death signal (Linux
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so it dies with the main process. Importing the
  module anywhere else arms nothing: only a process whose parent is that pid is armed.
* **Workers** (:func:`init_worker`) arm the same signal against their parent (the fork server,
  or the main process with ``spawn``/``fork``), and watch a *lifeline* pipe whose only writer is
  the main process: end-of-file (the main process is gone, however it ended, on any system)
  kills the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

#: Set, while synthbids starts the fork server, to the pid of the process starting it.
ENV_SUPERVISOR = 'SYNTHBIDS_SUPERVISOR_PID'
#: Writing ends of the lifelines held by this process (closed in forked workers).
LIFELINE_WRITERS: list = []

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent exits (strictly,
    the parent *thread* that forked it); returns whether it was armed (False elsewhere)."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no usable libc
        return False


def init_worker(cwd: str, lifeline) -> None:
    """Initializer of every worker process: die with the main process, then Nipype's own
    initialisation (working directory, no version check)."""
    for writer in LIFELINE_WRITERS:  # inherited by forked workers: not theirs to hold
        with contextlib.suppress(OSError):
            writer.close()
    die_with_parent()
    # 'fork' workers inherit the main process's SIGTERM handler (it unwinds the run): a worker
    # told to stop just stops, as the pool expects
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # the main process never writes: a readable lifeline is end-of-file, the main process
    # ended (perhaps before the signal was armed)
    if lifeline.poll():
        os._exit(1)
    threading.Thread(
        target=_watch_lifeline, args=(lifeline,), name='synthbids-lifeline', daemon=True
    ).start()
    from nipype.pipeline.plugins.multiproc import process_initializer

    process_initializer(cwd)


def _watch_lifeline(lifeline) -> None:
    """Block until the main process's end of the lifeline closes, then kill this process."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            lifeline.recv_bytes()
    os.kill(os.getpid(), signal.SIGKILL)


def run_in_worker(notes: str, fn, node, *args):
    """Run Nipype's task function ``fn``, with a note of the node in the folder ``notes`` while
    it runs (the main process reads it when this worker dies)."""
    note = os.path.join(notes, str(os.getpid()))
    try:
        with open(note, 'w') as f:
            f.write(describe_node(node))
    except OSError:
        note = None
    try:
        return fn(node, *args)
    finally:
        if note is not None:
            with contextlib.suppress(OSError):
                os.remove(note)


def describe_node(node) -> str:
    """``single_subject_01_wf.anat_T1w_wf.skullstrip_wf.strip (sub-01_T1w.nii.gz)``."""
    from nipype.interfaces.base import isdefined

    name = node.fullname.split('.', 1)[-1] if '.' in node.fullname else node.fullname
    in_file = getattr(node.inputs, 'in_file', None)
    if isinstance(in_file, (str, os.PathLike)) and isdefined(in_file):
        return f'{name} ({os.path.basename(in_file)})'
    return name


def _arm_if_supervised() -> None:
    parent = os.environ.get(ENV_SUPERVISOR)
    if parent is None or parent != str(os.getppid()):
        return
    if die_with_parent() and str(os.getppid()) != parent:
        os._exit(1)  # the parent died before the signal was armed


_arm_if_supervised()
