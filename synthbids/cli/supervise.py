"""Worker processes that cannot hang a run or outlive it: the MultiProc plugin synthbids uses.

Nipype's MultiProc runs nodes in a :class:`~concurrent.futures.ProcessPoolExecutor`. Two things
go wrong with it when processes are killed (the out-of-memory killer, ``kill -9``, a batch
system):

* a worker killed by a signal breaks the pool; Nipype's callback fails on the broken future,
  the result never arrives and its main loop polls forever. :class:`SupervisedMultiProcPlugin`
  turns a failed future into :class:`WorkerDied`: one line naming what died and the node it
  was running, exit 1, within one poll interval (2 s);
* the main process killed with SIGKILL leaves the fork server and the workers behind (the
  workers hold the fork server's "alive" pipe, so neither ever sees the main process go), and
  they keep writing into the work folder. Here every worker and the fork server die with the
  main process: on Linux the kernel kills them (``prctl(PR_SET_PDEATHSIG, SIGKILL)``; the
  fork server is armed by :mod:`synthbids.cli._worker`, which it imports when synthbids
  starts it), and everywhere a *lifeline* pipe whose only writer is the main process kills a
  worker as soon as it reads end-of-file.

When the run stops for any other reason (SIGTERM, Ctrl-C, an error), the workers are killed
before the exception leaves the plugin, so the process exits at once instead of waiting for
running nodes. A node a worker was running is left unfinished in the work folder, and Nipype
runs it again when the same work folder is given again.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait

from nipype.pipeline.plugins.multiproc import MultiProcPlugin

from ..core.errors import SynthbidsError
from ._worker import ENV_SUPERVISOR, LIFELINE_WRITERS, init_worker, run_in_worker

#: Plugin names (``--use-plugin`` files) that run under :class:`SupervisedMultiProcPlugin`.
SUPERVISED_PLUGINS = ('MultiProc', 'LegacyMultiProc')
#: How often the scheduler looks for finished nodes (Nipype's default: every 2 s).
POLL_SECONDS = 0.05
#: What the fork server imports when synthbids starts it.
FORKSERVER_MODULE = 'synthbids.cli._worker'
#: How long to wait for the pool to collect its workers after one died.
_COLLECT_TIMEOUT_S = 10.0


class WorkerDied(SynthbidsError):
    """A worker process died (killed by a signal, or exited) while the graph ran: exit 1."""

    exit_code = 1


class _TaskLost(BaseException):
    """A task's future failed outside Nipype's own error handling (a broken pool, a result
    that could not be sent back). A BaseException, so that it leaves Nipype's main loop (which
    catches every Exception of ``_get_result`` and goes on polling) for :meth:`run`."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


def start_forkserver() -> None:
    """Start multiprocessing's fork server (if it is not running) so that it dies with this
    process: it imports :data:`FORKSERVER_MODULE`, which arms its parent-death signal.

    Only from the main thread: the kernel signals a child when the thread that started it
    ends, and the fork server serves the whole process, not one run."""
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload(['__main__', FORKSERVER_MODULE])
    previous = os.environ.get(ENV_SUPERVISOR)
    os.environ[ENV_SUPERVISOR] = str(os.getpid())
    try:
        forkserver.ensure_running()
    finally:
        if previous is None:
            os.environ.pop(ENV_SUPERVISOR, None)
        else:
            os.environ[ENV_SUPERVISOR] = previous


class _TrackingContext:
    """A multiprocessing context that keeps the Process objects it makes (their pids and exit
    codes tell which worker died and how); everything else is the wrapped context's."""

    def __init__(self, base):
        self._base = base
        self.processes: list = []

    def Process(self, *args, **kwargs):  # noqa: N802 - the multiprocessing name
        process = self._base.Process(*args, **kwargs)
        self.processes.append(process)
        return process

    def __getattr__(self, name):
        return getattr(self._base, name)


class _Pool:
    """The executor as Nipype's MultiProc uses it (``submit``, ``shutdown``), with every task
    wrapped by :func:`run_in_worker`."""

    def __init__(self, executor: ProcessPoolExecutor, notes: str):
        self.executor = executor
        self.notes = notes

    def submit(self, fn, *args, **kwargs):
        return self.executor.submit(run_in_worker, self.notes, fn, *args, **kwargs)

    def shutdown(self, *args, **kwargs):
        return self.executor.shutdown(*args, **kwargs)


class SupervisedMultiProcPlugin(MultiProcPlugin):
    """Nipype's MultiProc (same ``plugin_args``, same scheduling) whose workers die with the
    main process and whose death ends the run with :class:`WorkerDied`.

    ``LegacyMultiProc``'s ``non_daemon`` and ``maxtasksperchild`` are ignored: the workers of
    this pool are not daemons and live for the whole run."""

    def __init__(self, plugin_args=None, notes_dir: str | os.PathLike | None = None):
        """``notes_dir``: the folder where workers note the node they run (emptied at the start
        of a run, removed at its end); a new temporary folder by default."""
        super().__init__(plugin_args=plugin_args)
        self.pool.shutdown(wait=False)  # Nipype's own executor: it has started nothing
        self.pool = None  # made by run()
        self._context = None
        self._notes_dir = notes_dir
        self._notes = None
        self._lifeline = None

    def run(self, graph, config, updatehash=False):
        finished = False
        # Nipype's loop sleeps poll_sleep_duration (2 s) between looks at finished tasks, so
        # every node waited up to 2 s for its inputs; a look costs about a millisecond
        execution = {**config['execution'], 'poll_sleep_duration': POLL_SECONDS}
        config = {**config, 'execution': execution}
        try:
            self._start_pool()
            result = super().run(graph, config, updatehash=updatehash)
            finished = True
            return result
        except _TaskLost as lost:
            raise self._lost(lost.error) from None
        except BrokenProcessPool as err:  # raised by submit: a worker died between tasks
            raise self._lost(err) from None
        finally:
            self._close(finished)

    # -- Nipype's hooks ---------------------------------------------------------------

    def _async_callback(self, args):
        if not args.cancelled() and args.exception() is None:
            super()._async_callback(args)
        # a failed future (dead worker) is reported by _get_result, not in this thread

    def _get_result(self, taskid):
        future = self._task_obj.get(taskid)
        if future is not None and future.done() and not future.cancelled():
            error = future.exception()
            if error is not None:
                raise _TaskLost(error)
        return super()._get_result(taskid)

    # -- ours -------------------------------------------------------------------------

    def _start_pool(self) -> None:
        """The executor, its lifeline and the folder of notes (workers start on demand)."""
        self._context = _TrackingContext(
            multiprocessing.get_context(self.plugin_args.get('mp_context'))
        )
        if self._context.get_start_method() == 'forkserver':
            start_forkserver()
        if self._notes_dir is None:
            self._notes = tempfile.mkdtemp(prefix='synthbids-workers-')
        else:  # notes of a killed run's workers are stale
            self._notes = os.fspath(self._notes_dir)
            shutil.rmtree(self._notes, ignore_errors=True)
            os.makedirs(self._notes)
        reader, self._lifeline = multiprocessing.Pipe(duplex=False)
        LIFELINE_WRITERS.append(self._lifeline)
        executor = ProcessPoolExecutor(
            max_workers=self.processors,
            initializer=init_worker,
            initargs=(self._cwd, reader),
            mp_context=self._context,
        )
        self.pool = _Pool(executor, self._notes)

    def _lost(self, error: BaseException) -> WorkerDied:
        """The one-line error for a task whose future failed."""
        if not isinstance(error, BrokenProcessPool):
            return WorkerDied(
                f'a worker could not run a processing step ({type(error).__name__}: '
                f'{str(error).splitlines()[0] if str(error) else "no details"}); '
                'rerun with the same -w to continue'
            )
        self._collect_workers()
        died, what = None, 'died'
        for process in self._context.processes:
            code = process.exitcode
            if code is None or code == 0:
                continue
            # workers the pool stopped after the first death end with SIGTERM: prefer another
            if died is None or died.exitcode == -signal.SIGTERM:
                died = process
        if died is not None:
            what = _how_it_died(died.exitcode)
        running = self._note_of(died) if died is not None else None
        where = f' while running {running}' if running else ''
        return WorkerDied(f'a worker process {what}{where}; rerun with the same -w to continue')

    def _collect_workers(self) -> None:
        """Let the pool stop and reap its workers (bounded), so their exit codes are known."""
        waiter = threading.Thread(
            target=self.pool.executor.shutdown, kwargs={'wait': True}, daemon=True
        )
        waiter.start()
        waiter.join(_COLLECT_TIMEOUT_S)

    def _note_of(self, process) -> str | None:
        try:
            with open(os.path.join(self._notes, str(process.pid))) as f:
                return f.read().strip() or None
        except (OSError, TypeError):
            return None

    def _close(self, finished: bool) -> None:
        """After the run: stop every worker that is still alive unless the run finished
        (then Nipype has shut the pool down), cut the lifeline, forget the notes."""
        if not finished and self.pool is not None:
            for process in self._context.processes:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    # a ready sentinel means it has ended; reading it is the pool's business
                    if not wait([process.sentinel], 0):
                        process.kill()
            with contextlib.suppress(Exception):
                self.pool.executor.shutdown(wait=False, cancel_futures=True)
        if self._lifeline is not None:
            with contextlib.suppress(ValueError):
                LIFELINE_WRITERS.remove(self._lifeline)
            with contextlib.suppress(OSError):
                self._lifeline.close()
        if self._notes is not None:
            shutil.rmtree(self._notes, ignore_errors=True)


def _how_it_died(code: int) -> str:
    if code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f'signal {number}'
        if number == signal.SIGKILL:
            return f'was killed (signal {number}, {name}: out of memory?)'
        return f'was killed by signal {number} ({name})'
    return f'exited unexpectedly (exit code {code})'
