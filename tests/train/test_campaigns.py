"""Campaigns that outlive their machine: ``synthbids-train resume``, time-limited runs and the
GPU recipe's job and collect steps (dry run on the CPU with a tiny network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthbids.cli.train import main
from synthbids.core.checkpoints import read_checkpoint
from synthbids.train.loop import trim_history
from tests.train.test_train_cli import args, maps  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def step_of(run: Path) -> int:
    return read_checkpoint(run / 'state.pt', full_state=True)['step']


def loss_rows(run: Path) -> list[int]:
    rows = (run / 'history.tsv').read_text().splitlines()[1:]
    return [int(r.split('\t')[0]) for r in rows if r.split('\t')[1] == 'loss']


def test_resume_continues_with_the_recorded_options_exactly(maps, tmp_path, capsys):  # noqa: F811
    given = args(maps, tmp_path / 'a', 4) + ['--val-samples', '1', '--warmup', '3']
    assert main(given) == 0
    first = args(maps, tmp_path / 'b', 2) + ['--val-samples', '1', '--warmup', '3']
    assert main(first) == 0
    options = json.loads((tmp_path / 'b' / 'run.json').read_text())['options']
    assert options['warmup'] == 3 and options['val_samples'] == 1 and options['lr'] == 1e-3
    assert main(['resume', str(tmp_path / 'b'), '--steps', '4']) == 0
    out = capsys.readouterr().out
    assert '--warmup 3' in out and '--val-samples 1' in out  # the command it continued with
    a = torch.load(tmp_path / 'a' / 'last.pt', weights_only=True)['model_state_dict']
    b = torch.load(tmp_path / 'b' / 'last.pt', weights_only=True)['model_state_dict']
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0)
    assert loss_rows(tmp_path / 'b') == [1, 2, 3, 4]
    recorded = json.loads((tmp_path / 'b' / 'run.json').read_text())['options']
    assert recorded['steps'] == 4  # the new total is what the next resume continues to


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(['resume', str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / 'run.json') in err[0]
    (tmp_path / 'run.json').write_text('[1, 2]')
    assert main(['resume', str(tmp_path)]) != 0
    assert 'not a synthbids-train run record' in capsys.readouterr().err


def test_time_limit_saves_and_stops_and_resume_goes_on(maps, tmp_path, capsys):  # noqa: F811
    run = tmp_path / 'run'
    assert main(args(maps, run, 2)) == 0
    assert main(['resume', str(run), '--steps', '50', '--time-limit', '0']) == 0
    assert step_of(run) == 2  # no step fits in no time; the state is saved as it was
    assert main(['resume', str(run), '--steps', '3']) == 0
    assert step_of(run) == 3 and loss_rows(run) == [1, 2, 3]


def test_history_rows_after_the_saved_step_are_dropped(tmp_path):
    history = tmp_path / 'history.tsv'
    history.write_text(
        'step\tkind\tvalue\tseconds\n1\tloss\t0.5\t1\n2\tloss\t0.4\t2\n'
        '2\tval_dice\t0.7\t2\n3\tloss\t0.3\t3\n4\tlo'
    )
    trim_history(history, 2)
    rows = history.read_text().splitlines()
    assert rows[0].startswith('step') and [r.split('\t')[0] for r in rows[1:]] == ['1', '2', '2']


def gpu_script(*argv, env=None, check=True):
    full = {**os.environ, 'PYTHON': sys.executable, **(env or {})}
    return subprocess.run(
        ['bash', str(REPO / 'scripts' / 'gpu_train.sh'), *argv],
        env=full,
        capture_output=True,
        text=True,
        check=check,
        cwd=REPO,
    )


def test_gpu_recipe_dry_run_on_cpu_trains_evaluates_and_collects(maps, tmp_path):  # noqa: F811
    """The GPU recipe with tiny settings on the CPU. ``prepare`` carries the campaign's map
    cache and held-out maps; a job on a machine without the maps resumes the campaign, trains,
    saves and returns its state as archive parts, and the final job evaluates; collect puts
    the results back into the campaign and refuses an older state."""
    local_maps = shutil.copytree(maps, tmp_path / 'maps')
    campaign = tmp_path / 'campaign'
    assert main(args(local_maps, campaign, 2)) == 0
    here = tmp_path / 'here'  # the campaign as committed on this machine
    shutil.copytree(campaign, here, ignore=shutil.ignore_patterns('maps-cache'))
    gpu = tmp_path / 'gpu'
    gpu_script('prepare', str(campaign), env={'GPU_DIR': str(gpu), 'WHEELS': '0'})
    assert sorted(p.name for p in (gpu / 'heldout').iterdir()) == ['seg_2.nii.gz']
    assert len(list((gpu / 'cache' / 'campaign').glob('seg_*-x1.npz'))) == 3
    # the device: no label maps, no map cache in the campaign, only what .gpu carries
    shutil.rmtree(local_maps)
    shutil.rmtree(campaign / 'maps-cache')
    out = tmp_path / 'out'
    env = {'OUT': str(out), 'DEVICE': 'cpu', 'WORKERS': '0', 'THREADS': '1', 'STEPS': '4'}
    env.update(GPU_DIR=str(gpu), EVAL_ARGS='--quick --no-colin27')
    done = gpu_script('job', str(campaign), '--final', env=env)
    parts = sorted(out.glob('result.tgz.part*'))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts), done.stderr
    assert len(list(out.iterdir())) <= 8  # what the device returns
    assert 'step 4/4' in (out / 'train.log').read_text()
    collected = gpu_script('collect', str(out), str(here))
    assert 'now at step 4 (was 2)' in collected.stdout
    assert step_of(here) == 4 and loss_rows(here) == [1, 2, 3, 4]
    (evaluation,) = (here / 'eval').glob('weights-strip-*.json')
    result = json.loads(evaluation.read_text())
    assert 0 <= result['mean_dice'] <= 1 and {r['map'] for r in result['synthetic']} == {
        'seg_2.nii.gz'
    }
    # a job's results older than the campaign are refused, and nothing is replaced
    shutil.copytree(maps, local_maps)
    assert main(['resume', str(here), '--steps', '6']) == 0
    before = (here / 'state.pt').read_bytes()
    refused = gpu_script('collect', str(out), str(here), check=False)
    assert refused.returncode != 0 and 'older than' in refused.stderr
    assert (here / 'state.pt').read_bytes() == before


@pytest.mark.parametrize('argv', [['job'], ['job', 'no/such/campaign'], ['nonsense']])
def test_gpu_recipe_bad_usage_is_one_line(argv, tmp_path):
    done = gpu_script(*argv, env={'OUT': str(tmp_path)}, check=False)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and 'gpu_train.sh: error' in done.stderr
