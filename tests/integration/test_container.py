"""The container recipes: the Dockerfile built and run with podman as CI does, and
``singularity.def`` converted with spython and compared step by step with the Dockerfile.

The image is built from a local Debian base made by debootstrap (``scripts/container-base.sh``,
kept between runs as a podman image), with PyTorch from the machine's CPU wheel. It then runs
one participant and the group level on the e2e dataset (tiny networks) as its unprivileged
user, with a read-only root file system, no network and the dataset mounted read-only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.app.test_e2e import EXPECTED, listing
from tests.conftest import IN_CI, REPO
from tests.integration.conftest import require_system

BASE_IMAGE = 'localhost/debian-base:bookworm'
IMAGE = 'localhost/synthbids:test'
#: Environment of the image that Singularity/Apptainer sets itself (HOME) or does not need.
DOCKER_ONLY_ENV = {'HOME'}


# --------------------------------------------------------------------------- recipe parsing


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with continuations joined and comments dropped."""
    out, current = [], ''
    for line in text.splitlines():
        if line.lstrip().startswith('#'):
            continue
        if line.rstrip().endswith('\\'):
            current += line.rstrip()[:-1] + ' '
            continue
        current += line
        if current.strip():
            out.append(current.strip())
        current = ''
    return out


def squash(command: str) -> str:
    """A shell command with continuations joined and runs of white space collapsed."""
    return ' '.join(command.replace('\\\n', ' ').split())


def parse_dockerfile(path: Path) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]]]:
    """``(global ARG defaults, {stage: [(INSTRUCTION, arguments), ...]})``; a stage built
    ``FROM`` another stage starts with that stage's instructions."""
    args, stages, current = {}, {}, None
    for line in _logical_lines(path.read_text()):
        instruction, _, rest = line.partition(' ')
        instruction, rest = instruction.upper(), squash(rest)
        if instruction == 'FROM':
            match = re.fullmatch(r'(\S+) AS (\S+)', rest, re.IGNORECASE)
            assert match, f'every stage is named: {line}'
            parent, current = match.groups()
            stages[current] = list(stages.get(parent, [('FROM', parent)]))
        elif current is None:
            assert instruction == 'ARG', line
            name, _, default = rest.partition('=')
            args[name] = default
        else:
            stages[current].append((instruction, rest))
    return args, stages


def stage_args(steps: list[tuple[str, str]]) -> dict[str, str]:
    return dict(rest.partition('=')[::2] for ins, rest in steps if ins == 'ARG')


def expand(command: str, env: dict[str, str]) -> list[str]:
    """The words of a simple shell command after expansion with ``env`` (as RUN would see them)."""
    out = subprocess.run(
        ['bash', '-c', f'printf "%s\\0" {command}'],
        env={'PATH': os.environ['PATH'], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split('\0')[:-1]


def load_singularity_def():
    from spython.main.parse.parsers import SingularityParser

    return SingularityParser(str(REPO / 'singularity.def')).recipe


def def_commands(lines: list[str]) -> list[str]:
    """The %post commands of a stage: spython keeps one item per physical line (continuations
    are joined here) and appends the lines that write its /tests.sh from %test (dropped)."""
    out, current = [], ''
    for line in lines:
        if '/tests.sh' in line:
            continue
        current += line + '\n'
        if not line.rstrip().endswith('\\'):
            out.append(squash(current))
            current = ''
    return out


def copies(steps, source_stage=None) -> set[tuple[str, str]]:
    """(source, destination) pairs of the COPY instructions of a stage, one per file or folder."""
    pairs = set()
    for ins, rest in steps:
        if ins != 'COPY':
            continue
        words = rest.split()
        origin = None
        if words[0].startswith('--from='):
            origin, words = words[0].split('=', 1)[1], words[1:]
        if origin != source_stage:
            continue
        *sources, dest = words
        for src in sources:
            target = dest + Path(src).name if len(sources) > 1 else dest
            pairs.add((src.rstrip('/'), target.rstrip('/')))
    return pairs


def def_files(files: list[str]) -> set[tuple[str, str]]:
    return {tuple(line.split()) for line in files}


# --------------------------------------------------------------------------- recipes, no tools


def test_singularity_def_converts_with_spython():
    """spython reads both stages and writes a Dockerfile in which every RUN is valid shell."""
    from spython.main.parse.writers import DockerWriter

    recipe = load_singularity_def()
    assert list(recipe) == ['builder', 'runtime']
    converted = DockerWriter(recipe).convert()
    runs = [rest for ins, rest in _instructions(converted) if ins == 'RUN']
    assert len(runs) >= 8
    for command in runs:
        check = subprocess.run(['bash', '-n', '-c', command], capture_output=True, text=True)
        assert check.returncode == 0, f'{command!r}: {check.stderr}'
    # every %post command survives as one RUN, unchanged
    post = [c for stage in recipe.values() for c in def_commands(stage.install)]
    assert [squash(r) for r in runs][: len(post)] == post
    assert 'COPY --from=builder /opt/synthbids /opt/synthbids' in converted
    assert re.search(r'^CMD exec synthbids "\$@"$', converted, re.M)


def _instructions(dockerfile_text: str) -> list[tuple[str, str]]:
    return [
        (line.partition(' ')[0].upper(), line.partition(' ')[2])
        for line in _logical_lines(dockerfile_text)
    ]


def test_singularity_def_has_the_dockerfile_steps():
    """Same base, same files, same commands (the Dockerfile with its default build arguments),
    same environment and entry point."""
    global_args, stages = parse_dockerfile(REPO / 'Dockerfile')
    assert list(stages) == ['base', 'builder', 'runtime']
    recipe = load_singularity_def()
    builder, runtime = recipe['builder'], recipe['runtime']

    # same base image
    assert stages['base'][0] == ('FROM', '${BASE_IMAGE}')
    assert builder.fromHeader == runtime.fromHeader == global_args['BASE_IMAGE']

    # same commands, in the same order: Docker's with its ARG defaults expanded
    for name, stage in (('builder', builder), ('runtime', runtime)):
        defaults = stage_args(stages[name])
        docker_runs = [rest for ins, rest in stages[name] if ins == 'RUN']
        ours = def_commands(stage.install)
        assert len(ours) == len(docker_runs), (name, ours, docker_runs)
        for theirs, mine in zip(docker_runs, ours):
            if 'pip install' in theirs:  # the lines that depend on build arguments
                assert expand(theirs, defaults) == expand(mine, {}), (theirs, mine)
            else:
                assert theirs == mine
    pip_lines = [c for c in def_commands(builder.install) if 'pip install' in c]
    assert len(pip_lines) == 2  # PyTorch, then synthbids

    # same files
    assert def_files(builder.files) == copies(stages['builder'])
    assert def_files(runtime.layer_files['builder']) == copies(stages['runtime'], 'builder')

    # same environment (Apptainer manages HOME itself)
    docker_env = dict(
        kv.split('=', 1)
        for ins, rest in stages['runtime']
        if ins == 'ENV'
        for kv in shlex.split(rest)
    )
    assert dict(kv.split('=', 1) for kv in runtime.environ) == {
        k: v for k, v in docker_env.items() if k not in DOCKER_ONLY_ENV
    }

    # same program, same user
    entry = [json.loads(rest) for ins, rest in stages['runtime'] if ins == 'ENTRYPOINT']
    assert entry == [['synthbids']]
    assert runtime.cmd == 'exec synthbids "$@"'
    assert ('USER', 'synthbids') in stages['runtime']
    assert any('useradd' in c and 'synthbids' in c for c in def_commands(runtime.install))
    text = (REPO / 'singularity.def').read_text()
    for section in ('%runscript', '%test', '%help', '%labels'):
        assert re.search(rf'^{section}\b', text, re.M), section


def test_dockerignore_keeps_the_context_small():
    """Only the package sources and docker/ go into the build context."""
    lines = [
        x.strip()
        for x in (REPO / '.dockerignore').read_text().splitlines()
        if x.strip() and not x.startswith('#')
    ]
    assert lines[0] == '*'
    allowed = {x[1:].rstrip('/') for x in lines if x.startswith('!')}
    assert allowed == {
        'pyproject.toml',
        'README.md',
        'synthbids',
        'workflows',
        'interfaces',
        'docker',
    }
    _, stages = parse_dockerfile(REPO / 'Dockerfile')
    sources = {src.split('/')[0] for src, _ in copies(stages['builder'])}
    assert sources <= allowed


# --------------------------------------------------------------------------- the image (podman)


def torch_wheel() -> Path:
    """The CPU PyTorch wheel for the image's Python (3.11 on bookworm)."""
    env = os.environ.get('SYNTHBIDS_TORCH_WHEEL')
    found = [Path(env)] if env else sorted(Path('/opt/wheels').glob('torch-*+cpu-cp311-*.whl'))
    if not found or not found[-1].is_file():
        message = 'no CPU torch wheel for Python 3.11 in /opt/wheels (or $SYNTHBIDS_TORCH_WHEEL)'
        if IN_CI:
            pytest.fail(message + ' - required in CI')
        pytest.skip(message)
    return found[-1]


def podman(*args, timeout=600, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ['podman', *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and result.returncode != 0:
        pytest.fail(
            f'podman {" ".join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}'
        )
    return result


@pytest.fixture(scope='module')
def image(tmp_path_factory) -> str:
    """The Dockerfile built with podman from the debootstrap base by
    ``scripts/container-build.sh`` (cached layers reused: .ci/run starts the same build in the
    background, and this waits for it)."""
    require_system('podman', 'debootstrap', 'runc', 'flock')
    wheel = torch_wheel()
    start = time.monotonic()
    built = subprocess.run(
        ['bash', str(REPO / 'scripts/container-build.sh'), IMAGE, BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=2700,
        env={**os.environ, 'SYNTHBIDS_TORCH_WHEEL': str(wheel)},
    )
    log = tmp_path_factory.mktemp('podman') / 'build.log'
    log.write_text(built.stdout + built.stderr)
    assert built.returncode == 0, f'podman build failed (log {log}):\n{log.read_text()[-4000:]}'
    print(f'\nimage {IMAGE}: base + build {time.monotonic() - start:.0f} s', file=sys.stderr)
    return IMAGE


def run_in_image(image, *args, timeout=600, volumes=(), entrypoint=None, user=None):
    """``podman run`` as the image's user (or ``user``), read-only root, no network."""
    cmd = ['run', '--rm', '--read-only', '--network', 'none']
    if user:
        cmd += ['--user', user]
    for host, inside, mode in volumes:
        cmd += ['--volume', f'{host}:{inside}:{mode}']
    if entrypoint:
        cmd += ['--entrypoint', entrypoint]
    return podman(*cmd, image, *args, timeout=timeout, check=False)


def test_image_user_entrypoint_and_weights(image):
    """Non-root user, ``synthbids`` as entry point, the package's weights inside, writable
    caches under /tmp only, and nothing to download at run time."""
    config = json.loads(podman('image', 'inspect', image).stdout)[0]['Config']
    assert config['User'] == 'synthbids'
    assert config['Entrypoint'] == ['synthbids']
    env = dict(e.split('=', 1) for e in config['Env'])
    assert env['HOME'] == '/home/synthbids' and env['MPLCONFIGDIR'].startswith('/tmp/')

    script = (
        'import json, os, synthbids\n'
        'from pathlib import Path\n'
        'from synthbids.data import data_path\n'
        'w = Path(str(data_path("weights")))\n'
        'home = os.environ["HOME"]\n'
        'try:\n'
        '    open(os.path.join(home, "probe"), "w").close(); home_writable = True\n'
        'except OSError:\n'
        '    home_writable = False\n'
        'print(json.dumps({"uid": os.getuid(), "version": synthbids.__version__,\n'
        '    "weights": sorted(p.name for p in w.iterdir()),\n'
        '    "index": json.loads((w / "index.json").read_text()),\n'
        '    "home_writable": home_writable,\n'
        '    "tmp_writable": os.access("/tmp", os.W_OK)}))\n'
    )
    result = run_in_image(image, '-c', script, entrypoint='python3')
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    weights = REPO / 'synthbids' / 'data' / 'weights'
    assert facts['uid'] == 1000
    assert facts['weights'] == sorted(p.name for p in weights.iterdir() if p.name != '.gitkeep')
    assert facts['index'] == json.loads((weights / 'index.json').read_text())
    assert facts['home_writable'] is False and facts['tmp_writable'] is True

    # any user id, as with docker run --user or Singularity: no passwd entry, HOME not its own
    script = (
        'import matplotlib.pyplot, nipype, bids\n'
        'from synthbids.cli.run import ensure_logname\n'
        'print(ensure_logname())\n'
    )
    other = run_in_image(image, '-c', script, entrypoint='python3', user='4321:4321')
    assert other.returncode == 0, other.stderr
    # podman adds a passwd entry named after the id; Docker does not (then: uid4321)
    assert other.stdout.split() in (['4321'], ['uid4321'])

    version = run_in_image(image, '--version')
    assert version.returncode == 0 and version.stdout.strip().startswith('synthbids ')
    models = run_in_image(image, 'list', entrypoint='synthbids-models')
    assert models.returncode == 0, models.stderr
    assert 'synthstrip' in models.stdout and 'user cache: /tmp/.cache/synthbids/models' in (
        models.stdout
    )


def test_participant_and_group_in_read_only_container(image, shared_inputs, tmp_path):
    """``synthbids bids out participant`` then ``group`` inside the image: unprivileged user,
    read-only root file system and input, no network; outputs as on the host."""
    inputs = shared_inputs['root']
    out, work = tmp_path / 'out', tmp_path / 'work'
    for folder in (out, work):
        folder.mkdir()
        os.chown(folder, 1000, 1000)
    before = listing(shared_inputs['bids'])
    volumes = [
        (inputs, '/inputs', 'ro'),
        (out, '/out', 'rw'),
        (work, '/work', 'rw'),
    ]
    rel = shared_inputs['bids'].relative_to(inputs)
    start = time.monotonic()
    participant = run_in_image(
        image,
        f'/inputs/{rel}',
        '/out',
        'participant',
        '--participant-label',
        '01',
        '--strip-model',
        '/inputs/tiny_strip.pt',
        '--seg-model',
        '/inputs/seg',
        '--posteriors',
        '--fast',
        '-w',
        '/work',
        '--nprocs',
        '2',
        '--omp-nthreads',
        '1',
        volumes=volumes,
    )
    took = time.monotonic() - start
    assert participant.returncode == 0, participant.stdout[-3000:] + participant.stderr[-3000:]
    print(f'\ncontainer participant run: {took:.1f} s', file=sys.stderr)
    group = run_in_image(image, f'/inputs/{rel}', '/out', 'group', volumes=volumes)
    assert group.returncode == 0, group.stdout[-3000:] + group.stderr[-3000:]

    # the committed e2e list, restricted to sub-01
    expected = [
        f
        for f in EXPECTED.read_text().split()
        if not re.match(r'sub-0[23]', f)  # the only participant processed is sub-01
    ]
    assert listing(out) == expected
    assert listing(shared_inputs['bids']) == before
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in out.rglob('*')}
    assert owners == {(1000, 1000)}  # written by the image's user, not root

    mask = nib.load(out / 'sub-01/anat/sub-01_desc-brain_mask.nii.gz')
    raw = nib.load(shared_inputs['bids'] / 'sub-01/anat/sub-01_T1w.nii.gz')
    assert mask.shape == raw.shape and np.allclose(mask.affine, raw.affine)
    assert 0 < np.asanyarray(mask.dataobj).mean() < 1
    dseg = np.asanyarray(nib.load(out / 'sub-01/anat/sub-01_desc-aseg_dseg.nii.gz').dataobj)
    assert (dseg > 0).any() and (dseg == 0).any()
    qc = (out / 'group_qc.tsv').read_text().splitlines()
    assert len(qc) == 1 + 2  # sub-01's T1w and T2w
    description = json.loads((out / 'dataset_description.json').read_text())
    assert description['DatasetLinks']['raw'] == f'file:///inputs/{rel}'
