"""SLURM on a real slurmctld/slurmd: the documented job-array recipe (``scripts/slurm/``: one
participant per array task from participants.tsv, the group level as a dependent job) and
Nipype's SLURM plugin through ``--use-plugin``.

A one-node cluster runs on localhost for the duration of the module: a private munge key and
socket, a cgroup-free configuration (``proctrack/linuxproc``, ``task/none``) with the node
description ``slurmd -C`` reports, and free ports; the daemons are stopped afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.app.conftest import write_dataset
from tests.app.test_e2e import EXPECTED, listing
from tests.conftest import REPO
from tests.integration.conftest import make_readable, require_system

SCRIPTS = REPO / 'scripts' / 'slurm'
SYNTHBIDS = Path(sys.executable).with_name('synthbids')
FINAL_STATES = {'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY'}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def node_line() -> str:
    """This machine as a SLURM node named localhost (``slurmd -C``), 90 % of its memory."""
    out = subprocess.run(['slurmd', '-C'], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith('NodeName='))
    fields = dict(f.split('=', 1) for f in line.split())
    fields['NodeName'] = 'localhost'
    fields['RealMemory'] = str(int(int(fields.get('RealMemory', '2048')) * 0.9))
    fields.pop('UpTime', None)
    return ' '.join(f'{k}={v}' for k, v in fields.items()) + ' State=UNKNOWN'


class LocalSlurm:
    """munged, slurmctld and slurmd for one node, all files under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / 'slurm.conf'
        self.env = {**os.environ, 'SLURM_CONF': str(self.conf)}
        self.daemons: list[tuple[subprocess.Popen, object]] = []

    def write_config(self) -> None:
        r = self.root
        for sub in ('state', 'spool', 'log'):
            (r / sub).mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)  # munged wants its socket's folder searchable by everyone
        key = r / 'munge.key'
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, d_port = _free_ports(2)
        self.conf.write_text(
            '\n'.join(
                [
                    'ClusterName=synthbids-test',
                    'SlurmctldHost=localhost',
                    'SlurmUser=root',
                    'SlurmdUser=root',
                    'AuthType=auth/munge',
                    'CredType=cred/munge',
                    f'AuthInfo=socket={r}/munge.socket',
                    f'SlurmctldPort={ctld_port}',
                    f'SlurmdPort={d_port}',
                    f'StateSaveLocation={r}/state',
                    f'SlurmdSpoolDir={r}/spool',
                    f'SlurmctldPidFile={r}/slurmctld.pid',
                    f'SlurmdPidFile={r}/slurmd.pid',
                    f'SlurmctldLogFile={r}/log/slurmctld.log',
                    f'SlurmdLogFile={r}/log/slurmd.log',
                    # no cgroups: plain process tracking, no task containment
                    'ProctrackType=proctrack/linuxproc',
                    'TaskPlugin=task/none',
                    'JobAcctGatherType=jobacct_gather/none',
                    'AccountingStorageType=accounting_storage/none',
                    'JobCompType=jobcomp/none',
                    'SwitchType=switch/none',
                    'MpiDefault=none',
                    'SchedulerType=sched/backfill',
                    'SelectType=select/cons_tres',
                    'SelectTypeParameters=CR_Core',
                    'ReturnToService=2',
                    'MinJobAge=600',
                    node_line(),
                    'PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP',
                ]
            )
            + '\n'
        )

    def start(self) -> None:
        """Start the daemons in the foreground, as children of this process (stopped by
        :meth:`stop`, never left behind), and wait for the node to be idle."""
        r = self.root
        self.write_config()
        commands = [
            [
                'munged',
                '--foreground',
                f'--key-file={r}/munge.key',
                f'--socket={r}/munge.socket',
                f'--pid-file={r}/munged.pid',
                f'--log-file={r}/log/munged.log',
                f'--seed-file={r}/munged.seed',
            ],
            ['slurmctld', '-D', '-i', '-f', str(self.conf)],
            ['slurmd', '-D', '-N', 'localhost', '-f', str(self.conf)],
        ]
        for cmd in commands:
            log = open(r / 'log' / f'{cmd[0]}.stdout', 'w')  # closed in stop()
            self.daemons.append((subprocess.Popen(cmd, stdout=log, stderr=log), log))
            if cmd[0] == 'munged':
                self._wait_for(lambda: (r / 'munge.socket').exists(), 'munged socket')
        self._wait_for(
            lambda: (
                self.run('sinfo', '-h', '-o', '%T', check=False).stdout.strip()
                in ('idle', 'mixed', 'allocated')
            ),
            'an idle SLURM node',
        )

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(proc.poll() is not None for proc, _ in self.daemons):
                break
            time.sleep(0.5)
        pytest.fail(f'waiting for {what}: a daemon exited or timed out\n{self.logs()}')

    def stop(self) -> None:
        for proc, log in reversed(self.daemons):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
        self.daemons.clear()

    def run(self, *cmd, check=True, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault('env', self.env)
        return subprocess.run(
            list(cmd), capture_output=True, text=True, check=check, timeout=60, **kwargs
        )

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """Every job of ``job_id`` (array tasks included) as scontrol's key=value fields."""
        out = self.run('scontrol', '-o', 'show', 'job', job_id).stdout
        return [dict(re.findall(r'(\w+)=(\S*)', line)) for line in out.splitlines() if line]

    def wait(self, *job_ids: str, timeout: float) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = [j for job_id in job_ids for j in self.jobs(job_id)]
            if jobs and all(j['JobState'] in FINAL_STATES for j in jobs):
                return jobs
            time.sleep(2)
        self.run('scancel', *job_ids, check=False)
        pytest.fail(f'SLURM jobs {job_ids} did not finish in {timeout} s:\n{self.logs()}')

    def logs(self) -> str:
        return '\n'.join(
            f'== {p.name}\n' + '\n'.join(p.read_text().splitlines()[-15:])
            for p in sorted((self.root / 'log').iterdir())
        )


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    require_system('munged', 'slurmctld', 'slurmd', 'sbatch', 'scontrol', 'sinfo')
    # munged wants every folder above its socket searchable by all: not pytest's private tmp
    root = Path(tempfile.mkdtemp(prefix='synthbids-slurm-', dir='/tmp'))
    cluster = LocalSlurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _time(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, '%Y-%m-%dT%H:%M:%S'))


def submit(env: dict, cwd: Path, mem: str) -> tuple[str, str]:
    """Run scripts/slurm/submit.sh (one CPU per task); returns (array job id, group job id)."""
    submitted = subprocess.run(
        ['bash', str(SCRIPTS / 'submit.sh'), '--cpus-per-task=1', mem],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    array_id, group_id = submitted.stdout.split()
    return array_id, group_id


def test_job_array_then_group(slurm, shared_inputs, tmp_path):
    """scripts/slurm/submit.sh: three array tasks (one per participants.tsv row), then the group
    level once they all succeeded; the outputs are those of the e2e test, file for file."""
    out, work, logs = tmp_path / 'out', tmp_path / 'work', tmp_path / 'logs'
    logs.mkdir()
    env = {
        **slurm.env,
        'BIDS_DIR': str(shared_inputs['bids']),
        'OUT_DIR': str(out),
        'WORK_DIR': str(work),
        'SYNTHBIDS': str(SYNTHBIDS),
        'SYNTHBIDS_ARGS': f'--strip-model {shared_inputs["strip"]} '
        f'--seg-model {shared_inputs["seg"]} --posteriors --fast',
    }
    start = time.monotonic()
    array_id, group_id = submit(env, logs, '--mem=1G')
    jobs = slurm.wait(array_id, group_id, timeout=900)
    took = time.monotonic() - start
    print(f'\nSLURM array (3 participants) + group: {took:.1f} s', file=sys.stderr)

    tasks = [j for j in jobs if j.get('ArrayJobId') == array_id and j.get('ArrayTaskId')]
    group = [j for j in jobs if j['JobId'] == group_id]
    assert sorted(int(j['ArrayTaskId']) for j in tasks) == [1, 2, 3]
    failed = [j for j in jobs if (j['JobState'], j['ExitCode']) != ('COMPLETED', '0:0')]
    task_logs = {p.name: p.read_text() for p in logs.glob('*.out')}
    assert failed == [], f'{failed}\n{task_logs}'
    assert len(group) == 1
    assert _time(group[0]['StartTime']) >= max(_time(j['EndTime']) for j in tasks)
    for n, label in ((1, '01'), (2, '02'), (3, '03')):
        log = task_logs[f'synthbids-{array_id}_{n}.out']
        assert f'task {n}: sub-{label} on ' in log
        assert f'sub-{label}.html' in log  # the participant run printed its report

    # the same outputs as one participant run over everything, then group (the e2e test)
    assert listing(out) == EXPECTED.read_text().split()
    assert len((out / 'group_qc.tsv').read_text().splitlines()) == 1 + 6
    assert sorted(p.name for p in work.iterdir()) == ['sub-01', 'sub-02', 'sub-03']


def test_bad_row_fails_the_task_and_skips_the_group(slurm, shared_inputs, tmp_path):
    """A participants.tsv row without a participant fails its task; afterok never starts the
    group level (--kill-on-invalid-dep cancels it)."""
    bids = write_dataset(
        tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',), name='one participant'
    )
    # row 2 has an empty participant_id
    (bids / 'participants.tsv').write_text('participant_id\tage\nsub-01\t30\n\t40\n')
    make_readable(bids)
    env = {
        **slurm.env,
        'BIDS_DIR': str(bids),
        'OUT_DIR': str(tmp_path / 'out'),
        'SYNTHBIDS': '/bin/true',  # the participant command itself is not under test here
    }
    array_id, group_id = submit(env, tmp_path, '--mem=100M')
    jobs = slurm.wait(array_id, group_id, timeout=300)
    states = {j.get('ArrayTaskId') or 'group': (j['JobState'], j['ExitCode']) for j in jobs}
    assert states['1'] == ('COMPLETED', '0:0')
    assert states['2'] == ('FAILED', '64:0')
    assert states['group'][0] == 'CANCELLED'
    log = (tmp_path / f'synthbids-{array_id}_2.out').read_text()
    assert 'no participant in row 2' in log


def test_nipype_slurm_plugin(slurm, shared_inputs, tmp_path, monkeypatch, capsys):
    """``--use-plugin`` with ``plugin: SLURM``: every node is its own sbatch job; $LOGNAME, which
    Nipype's plugin needs, is filled in when batch environments lack it."""
    from synthbids.cli.run import main

    bids = write_dataset(
        tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',), name='one image'
    )
    (bids / 'participants.tsv').write_text('participant_id\nsub-01\n')
    plugin = tmp_path / 'slurm.yml'
    plugin.write_text(
        'plugin: SLURM\nplugin_args:\n  sbatch_args: --cpus-per-task=1 --mem=1G\n  max_jobs: 4\n'
    )
    monkeypatch.setenv('SLURM_CONF', str(slurm.conf))
    monkeypatch.delenv('LOGNAME', raising=False)
    out, work = tmp_path / 'out', tmp_path / 'work'
    start = time.monotonic()
    code = main(
        [
            str(bids),
            str(out),
            'participant',
            '--strip-model',
            str(shared_inputs['strip']),
            '--seg-model',
            str(shared_inputs['seg']),
            '--fast',
            '-w',
            str(work),
            '--omp-nthreads',
            '1',
            '--use-plugin',
            str(plugin),
        ]
    )
    took = time.monotonic() - start
    assert code == 0, capsys.readouterr().err
    print(f'\nNipype SLURM plugin, one image: {took:.1f} s', file=sys.stderr)
    assert os.environ['LOGNAME']
    for name in (
        'sub-01_desc-brain_mask.nii.gz',
        'sub-01_desc-brain_T1w.nii.gz',
        'sub-01_desc-aseg_dseg.nii.gz',
        'sub-01_desc-aseg_volumes.tsv',
    ):
        assert (out / 'sub-01' / 'anat' / name).is_file(), name
    # the three network steps ran as SLURM jobs (Nipype runs the output steps itself)
    batch = [p.name for p in work.rglob('batch/batchscript_*.sh')]
    steps = sorted(name.rsplit('.', 2)[1] for name in batch)  # ..._wf.<step>.sh
    assert steps == ['head_wf_head', 'segmentation_wf_seg', 'skullstrip_wf_strip'], batch
    job_ids = sorted(p.stem.split('-')[1] for p in work.rglob('batch/slurm-*.out'))
    assert len(job_ids) == len(steps)
    for job_id in job_ids:
        (job,) = slurm.jobs(job_id)
        assert (job['JobState'], job['ExitCode']) == ('COMPLETED', '0:0'), job
        assert Path(job['Command']).name in batch
    assert len(list(work.rglob('skullstrip_wf/strip/result_strip.pklz'))) == 1
    assert len(list(work.rglob('segmentation_wf/seg/result_seg.pklz'))) == 1


def test_slurm_plugin_yaml_and_logname(tmp_path, monkeypatch):
    """No cluster needed: the plugin YAML is read as is, and $LOGNAME gets a value when the
    environment has none, even for a user id missing from the user database."""
    import getpass

    from synthbids.cli.run import ensure_logname, load_plugin

    plugin = tmp_path / 'slurm.yml'
    plugin.write_text('plugin: SLURM\nplugin_args:\n  sbatch_args: -p short\n  max_jobs: 4\n')
    assert load_plugin(plugin) == ('SLURM', {'sbatch_args': '-p short', 'max_jobs': 4})

    monkeypatch.setenv('LOGNAME', 'alice')
    assert ensure_logname() == 'alice'
    monkeypatch.delenv('LOGNAME')
    monkeypatch.setenv('USER', 'bob')
    assert ensure_logname() == 'bob' and os.environ['LOGNAME'] == 'bob'

    def no_user():
        raise OSError('no user name')

    monkeypatch.delenv('LOGNAME')
    monkeypatch.setattr(getpass, 'getuser', no_user)
    assert ensure_logname() == f'uid{os.getuid()}'
