"""What the benchmarks share: timing one process and where their helper files live."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path


def bench_cache(name: str) -> Path:
    """A folder of the benchmark cache (reference environments, full-size weights)."""
    base = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return base / 'synthbids-bench' / name


def measure(cmd: list[str], env: dict) -> dict:
    """Wall seconds (around the process), CPU seconds and peak RSS in GB (from ``wait4``) of
    one process; a failing command ends the benchmark with its error output."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return _summary(cmd, status, usage, wall, err)


def _summary(cmd: list[str], status: int, usage, wall: float, err: str) -> dict:
    """Wall, CPU and peak RSS of a finished process; its failure ends the benchmark."""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f'failed: {" ".join(cmd)}\n{err}')
    return {
        'wall_s': round(wall, 2),
        'cpu_s': round(usage.ru_utime + usage.ru_stime, 2),
        'peak_rss_gb': round(usage.ru_maxrss / 1024**2, 3),
    }


def _tree(root: int) -> list[int]:
    """``root`` and every process descending from it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit():
            continue
        try:
            with open(f'/proc/{entry.name}/stat') as fh:
                ppid = int(fh.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB; (0, 0) once it is gone."""
    try:
        with open(f'/proc/{pid}/smaps_rollup') as fh:
            fields = dict(line.split(':', 1) for line in fh if ':' in line)
        return int(fields['Rss'].split()[0]), int(fields['Pss'].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def measure_tree(cmd: list[str], env: dict, interval: float = 0.5) -> dict:
    """:func:`measure` plus the peak memory of the whole process tree, sampled every
    ``interval`` seconds (reading a large process's page summary costs CPU time, so not too
    often): the sum of PSS (shared pages counted once, split among their users;
    the tree's real footprint) and the sum of RSS (shared pages counted in every process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_rss = peak_pss = 0
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        mem = [_memory_kb(p) for p in _tree(proc.pid)]
        peak_rss = max(peak_rss, sum(m[0] for m in mem))
        peak_pss = max(peak_pss, sum(m[1] for m in mem))
        time.sleep(interval)
    wall = time.perf_counter() - start
    reader.join()
    return _summary(cmd, status, usage, wall, b''.join(err).decode()[-3000:]) | {
        'tree_peak_pss_gb': round(peak_pss / 1024**2, 3),
        'tree_peak_rss_sum_gb': round(peak_rss / 1024**2, 3),
    }
