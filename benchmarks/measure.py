"""What the benchmarks share: timing one process and where their helper files live."""

from __future__ import annotations

import os
import subprocess
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
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f'failed: {" ".join(cmd)}\n{err}')
    return {
        'wall_s': round(wall, 2),
        'cpu_s': round(usage.ru_utime + usage.ru_stime, 2),
        'peak_rss_gb': round(usage.ru_maxrss / 1024**2, 3),
    }
