"""Killed processes (issue 18, items 1 and 2), with real processes and signals.

Each test starts ``python -m synthbids.cli.run`` on a one-image dataset (tiny networks) in a
subprocess of its own session, finds through ``/proc`` the worker that runs a network node
(its working directory is the node's folder), and kills something:

* a worker, with SIGKILL (what the out-of-memory killer does): the run must end within
  seconds, exit 1, with one line naming what died and the node; before, Nipype's MultiProc
  polled forever;
* the main process, with SIGKILL: no process it started (fork server, workers, resource
  tracker) may remain; before, the fork server and the workers lived on, re-parented to PID 1;
* the main process, with SIGTERM, while a worker is stuck (stopped): exit 143 at once; before,
  the process waited for the worker's node to end.

After each kill, a rerun with the same work folder must give outputs byte-identical to an
uninterrupted run. Compared: every file of the output folder (images, sidecars, tables,
dataset files, citation), except those that hold the run's identity or time by design: the
HTML reports (``sub-<label>.html``), the report figures (``sub-<label>/figures/*.svg``:
Matplotlib writes the date and random element ids) and the per-run folders
``sub-<label>/log/<run id>/`` (the run's TOML settings, crash files).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app.conftest import write_dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith('linux'),
        reason='needs Linux: /proc to find the worker processes, and prctl(PR_SET_PDEATHSIG)',
    ),
]

#: The networks' nodes: their folders are where a busy worker's working directory is.
NETWORK_NODES = ('strip', 'seg')
KILLED_WORKER = re.compile(
    r'synthbids: error: a worker process was killed \(signal 9, SIGKILL: out of memory\?\) '
    r'while running single_subject_01_wf\.anat_T1w_wf\.\w+\.(strip|seg) \(sub-01_T1w\.nii\.gz\); '
    r'rerun with the same -w to continue'
)


# --------------------------------------------------------------------------- processes


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (``/proc/<pid>/stat``)."""
    out = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = Path(f'/proc/{entry}/stat').read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rindex(')') + 2 :].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    parents = _parents()
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        todo += children
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return stat[stat.rindex(')') + 2] != 'Z'


def survivors(pids, within: float) -> list[int]:
    """The processes of ``pids`` still alive after waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


class Run:
    """``python -m synthbids.cli.run`` in a subprocess (its own session), output in files."""

    def __init__(self, root: Path, name: str, argv: list[str]):
        self.root = root
        self.name = name
        self.argv = [sys.executable, '-m', 'synthbids.cli.run', *argv]
        self.proc = None

    def start(self) -> Run:
        self.stdout = (self.root / f'{self.name}.out').open('w')
        self.stderr = (self.root / f'{self.name}.err').open('w')
        # from a folder outside the repository: the installed synthbids runs
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.root,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,
        )
        return self

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> tuple[str, str]:
        for f in (self.stdout, self.stderr):
            f.flush()
        return (
            (self.root / f'{self.name}.out').read_text(),
            (self.root / f'{self.name}.err').read_text(),
        )

    def network_worker(self, work: Path, timeout: float = 180) -> tuple[int, str]:
        """The first worker found running a network node, stopped (SIGSTOP) so that it stays
        inside the node; returns its pid and the node's folder name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f'the run ended (exit {self.proc.returncode}) before a worker ran')
            for pid in descendants(self.proc.pid):
                node = self._node_of(pid, work)
                if node is None:
                    continue
                os.kill(pid, signal.SIGSTOP)
                if self._node_of(pid, work) == node:
                    return pid, node
                os.kill(pid, signal.SIGCONT)  # it left the node meanwhile
            time.sleep(0.02)
        pytest.fail(f'no worker ran a network node within {timeout} s')

    @staticmethod
    def _node_of(pid: int, work: Path) -> str | None:
        try:
            cwd = Path(os.readlink(f'/proc/{pid}/cwd'))
        except OSError:
            return None
        if cwd.name in NETWORK_NODES and work in cwd.parents:
            return cwd.name
        return None

    def close(self) -> None:
        """Kill whatever is left of this run (the test failed, or the code is the old one)."""
        if self.proc is not None:
            for pid in [self.proc.pid, *descendants(self.proc.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # orphans keep the session
            except OSError:
                pass
            self.proc.wait()
        for f in (getattr(self, 'stdout', None), getattr(self, 'stderr', None)):
            if f is not None:
                f.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope='module')
def dataset(tmp_path_factory, tiny_strip_ckpt, tiny_seg_models, tiny_head_ckpt):
    """A one-image dataset and the command line of a participant run on it."""
    root = tmp_path_factory.mktemp('killed')
    bids = write_dataset(root / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',))

    def argv(out: Path, work: Path, *extra: str) -> list[str]:
        return [
            str(bids),
            str(out),
            'participant',
            '--participant-label',
            '01',
            '--strip-model',
            str(tiny_strip_ckpt),
            '--seg-model',
            str(tiny_seg_models),
            '--head-model',
            str(tiny_head_ckpt),
            '--omp-nthreads',
            '1',
            '-w',
            str(work),
            *extra,
        ]

    return root, argv


@pytest.fixture(scope='module')
def reference(dataset) -> dict[str, bytes]:
    """The compared outputs of an uninterrupted run."""
    root, argv = dataset
    run = Run(root, 'reference', argv(root / 'ref-out', root / 'ref-work')).start()
    try:
        code = run.wait(600)
        assert code == 0, run.output()
    finally:
        run.close()
    outputs = compared_outputs(root / 'ref-out')
    assert any(name.endswith('_desc-brain_mask.nii.gz') for name in outputs)
    assert any(name.endswith('_desc-aseg_dseg.nii.gz') for name in outputs)
    return outputs


@pytest.fixture
def runs():
    """Start runs through this; whatever is left of them is killed at the end."""
    started = []
    yield started
    for run in started:
        run.close()


def compared_outputs(out: Path) -> dict[str, bytes]:
    """Every output file with its bytes, except the reports, their figures and the per-run
    logs (see the module's docstring)."""
    files = {}
    for path in sorted(out.rglob('*')):
        rel = path.relative_to(out)
        if not path.is_file() or path.suffix == '.html':
            continue
        if len(rel.parts) > 2 and rel.parts[1] in ('figures', 'log'):
            continue
        files[rel.as_posix()] = path.read_bytes()
    return files


def rerun_matches(dataset, reference, out: Path, work: Path, runs) -> None:
    """Rerun with the same work folder: it succeeds and its outputs equal the reference."""
    root, argv = dataset
    rerun = Run(root, f'{out.name}-rerun', argv(out, work))
    runs.append(rerun.start())
    code = rerun.wait(600)
    assert code == 0, rerun.output()
    outputs = compared_outputs(out)
    assert sorted(outputs) == sorted(reference)
    assert [name for name in reference if outputs[name] != reference[name]] == []


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize('nprocs', ['1', 'default'])
def test_killed_worker_ends_the_run(dataset, reference, runs, nprocs):
    """SIGKILL of the worker running a network node: exit 1 within seconds, one line naming
    the node; nothing left running; a rerun with the same work folder completes the outputs."""
    root, argv = dataset
    out, work = root / f'worker-{nprocs}-out', root / f'worker-{nprocs}-work'
    extra = () if nprocs == 'default' else ('--nprocs', nprocs)
    run = Run(root, f'worker-{nprocs}', argv(out, work, *extra))
    runs.append(run.start())
    worker, node = run.network_worker(work)
    started = descendants(run.proc.pid)

    killed = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    code = run.wait(30)
    took = time.monotonic() - killed
    stdout, stderr = run.output()
    assert code == 1, f'still running {took:.0f} s after the kill' if code is None else stderr
    assert took < 15
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert KILLED_WORKER.fullmatch(lines[0]), lines[0]
    assert lines[0].count(f'.{node} (') == 1
    assert 'Traceback' not in stdout
    assert survivors(started, within=10) == []

    if nprocs == '1':  # once is enough: the rerun does not depend on how many workers ran
        rerun_matches(dataset, reference, out, work, runs)


def test_killed_main_process_leaves_nothing_behind(dataset, reference, runs):
    """SIGKILL of the main process while a worker is inside a network node (stopped, so it
    cannot finish on its own): the fork server, the workers and the resource tracker are all
    gone within seconds; a rerun with the same work folder gives the reference outputs."""
    root, argv = dataset
    out, work = root / 'main-out', root / 'main-work'
    run = Run(root, 'main', argv(out, work))
    runs.append(run.start())
    run.network_worker(work)
    started = descendants(run.proc.pid)
    assert len(started) >= 3  # resource tracker, fork server, at least one worker

    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.wait(10) == -signal.SIGKILL
    assert survivors(started, within=10) == []

    rerun_matches(dataset, reference, out, work, runs)


def test_sigterm_stops_workers_at_once(dataset, reference, runs):
    """SIGTERM (a batch system's time limit) while a worker is stuck in a network node: exit
    143 within seconds, nothing left running; a rerun gives the reference outputs."""
    root, argv = dataset
    out, work = root / 'term-out', root / 'term-work'
    run = Run(root, 'term', argv(out, work))
    runs.append(run.start())
    run.network_worker(work)
    started = descendants(run.proc.pid)

    os.kill(run.proc.pid, signal.SIGTERM)
    code = run.wait(30)
    assert code == 143, 'still running 30 s after SIGTERM' if code is None else run.output()
    assert run.output()[1].strip().splitlines()[-1] == 'synthbids: interrupted'
    assert survivors(started, within=10) == []

    rerun_matches(dataset, reference, out, work, runs)


LIFELINE_MAIN = """
import multiprocessing, os, signal, sys
from concurrent.futures import ProcessPoolExecutor

from synthbids.cli._worker import init_worker


def task():
    return os.getpid()


if __name__ == '__main__':
    reader, writer = multiprocessing.Pipe(duplex=False)
    # a plain fork server: nothing arms its parent-death signal, so only the lifeline can
    # end the workers (and the fork server ends when they have)
    context = multiprocessing.get_context('forkserver')
    pool = ProcessPoolExecutor(2, mp_context=context, initializer=init_worker,
                               initargs=(os.getcwd(), reader))
    print(*sorted({pool.submit(task).result() for _ in range(4)}), flush=True)
    sys.stdin.readline()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_lifeline_alone_ends_workers(tmp_path):
    """Where nothing else does (no parent-death signal on the fork server: another system, or
    a fork server started before synthbids'), the lifeline ends the workers of a main process
    killed with SIGKILL, and with them the fork server and the resource tracker."""
    script = tmp_path / 'lifeline_main.py'
    script.write_text(LIFELINE_MAIN)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started = []
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ''
        workers = {int(pid) for pid in line.split()}
        if not workers and ready:  # end of file: the script failed
            assert proc.wait(10) == 0, proc.stderr.read()
        assert workers, 'no worker in 120 s'
        started = descendants(proc.pid)
        assert workers <= set(started)
        proc.stdin.write('\n')
        proc.stdin.flush()
        assert proc.wait(10) == -signal.SIGKILL
        assert survivors(started, within=10) == []
    finally:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.kill()
        proc.wait()
