"""``synthbids-train``: runs, resumes deterministically, exports loadable weights."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from synthbids.cli.train import main
from synthbids.core.strip import load_strip_model, strip
from synthbids.synth.labelmaps import GENERATION_LABELS
from tests.synth.test_generator import toy_map


@pytest.fixture(scope='module')
def maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp('maps')
    lia = np.array([[-1.0, 0, 0, 48], [0, 0, 1, -48], [0, -1, 0, 48], [0, 0, 0, 1]])
    for i in range(3):
        labels = np.array(GENERATION_LABELS)[toy_map((40 + 4 * i,) * 3).indices]
        nib.Nifti1Image(labels.astype(np.float32), lia).to_filename(folder / f'seg_{i}.nii.gz')
    return folder


def args(maps, out, steps):
    return [
        'strip',
        '--maps',
        str(maps),
        '--out',
        str(out),
        '--steps',
        str(steps),
        '--voxsize',
        '1',
        '--crop',
        '16',
        '16',
        '16',
        '--features',
        '2',
        '--max-features',
        '4',
        '--levels',
        '3',
        '--val-every',
        '2',
        '--val-samples',
        '2',
        '--save-every',
        '1',
        '--lr',
        '1e-3',
        '-t',
        '1',
        '--val-maps',
        '1',
    ]


def seg_args(maps, out, steps):
    """:func:`args` for a seg run on a 2 mm grid."""
    seg = args(maps, out, steps)
    seg[0] = 'seg'
    seg[seg.index('--voxsize') + 1] = '2'
    return seg


def test_training_resumes_exactly_and_exports_official_format(maps, tmp_path, capsys):
    assert main(args(maps, tmp_path / 'a', 4)) == 0
    assert main(args(maps, tmp_path / 'b', 2)) == 0
    assert main(args(maps, tmp_path / 'b', 4)) == 0  # resume the same run to step 4
    a = torch.load(tmp_path / 'a' / 'last.pt', weights_only=True)
    b = torch.load(tmp_path / 'b' / 'last.pt', weights_only=True)
    for key, value in a['model_state_dict'].items():
        torch.testing.assert_close(value, b['model_state_dict'][key])
    history = (tmp_path / 'a' / 'history.tsv').read_text().splitlines()
    assert history[0] == 'step\tkind\tvalue\tseconds'
    assert sum(line.split('\t')[1] == 'loss' for line in history[1:]) == 4
    assert any(line.split('\t')[1] == 'val_dice' for line in history[1:])
    meta = a['synthbids']
    assert meta['task'] == 'strip' and meta['iterations'] == 4
    assert meta['recipe']['val_maps'] == ['seg_2.nii.gz']
    assert meta['conform']['voxsize'] == 1.0
    # the exported file is what synthbids-strip loads
    model = load_strip_model(tmp_path / 'a' / 'best.pt')
    assert model.net.divisor == 8
    head = nib.Nifti1Image(
        np.random.default_rng(0).random((20, 22, 18)).astype(np.float32), np.eye(4)
    )
    head.to_filename(tmp_path / 'head.nii.gz')
    result = strip(tmp_path / 'head.nii.gz', model)
    assert result.mask.shape == (20, 22, 18)


def test_export_half_precision(maps, tmp_path, capsys):
    assert main(args(maps, tmp_path / 'r', 1)) == 0
    assert main(['export', str(tmp_path / 'r' / 'last.pt'), str(tmp_path / 'w.pt'), '--half']) == 0
    state = torch.load(tmp_path / 'w.pt', weights_only=True)
    assert all(v.dtype == torch.float16 for v in state['model_state_dict'].values())
    assert load_strip_model(tmp_path / 'w.pt').net.encoder[0][0].conv.weight.dtype == torch.float32


def test_bad_arguments(maps, tmp_path, capsys):
    assert main(['strip', '--out', str(tmp_path / 'x'), '--steps', '1']) != 0
    assert 'give --maps' in capsys.readouterr().err
    bad = args(maps, tmp_path / 'y', 1)
    bad[bad.index('--crop') + 1] = '12'
    assert main(bad) != 0
    assert 'multiples of 8' in capsys.readouterr().err


def test_fine_tuning_starts_from_given_weights(maps, tmp_path, capsys):
    assert main(args(maps, tmp_path / 'a', 1)) == 0
    tuned = args(maps, tmp_path / 'nocsf', 0) + ['--init', str(tmp_path / 'a' / 'last.pt')]
    tuned[0] = 'strip-nocsf'
    assert main(tuned) == 0  # zero steps: the exported weights are the initial ones
    a = torch.load(tmp_path / 'a' / 'last.pt', weights_only=True)['model_state_dict']
    b = torch.load(tmp_path / 'nocsf' / 'last.pt', weights_only=True)
    assert b['synthbids']['task'] == 'strip-nocsf'
    assert b['synthbids']['recipe']['init'].endswith('last.pt')
    for key, value in a.items():
        assert torch.equal(value, b['model_state_dict'][key])


def test_seg_training_exports_keras_weights_that_the_seg_pipeline_loads(maps, tmp_path):
    from synthbids.core.seg_keras import read_keras_meta
    from synthbids.core.segment import load_seg_model, segment

    seg = seg_args(maps, tmp_path / 'seg', 2)
    assert main(seg) == 0
    best = tmp_path / 'seg' / 'best.h5'
    meta = read_keras_meta(best)
    assert meta['task'] == 'seg' and meta['voxsize'] == 2.0 and len(meta['labels']) == 33
    model = load_seg_model(best)
    assert model.voxsize == 2.0
    img = nib.Nifti1Image(
        np.random.default_rng(1).random((30, 34, 28)).astype(np.float32), np.eye(4)
    )
    img.to_filename(tmp_path / 'head.nii.gz')
    result = segment(tmp_path / 'head.nii.gz', model, fast=True)
    assert result.labels.shape == (30, 34, 28)
    assert 'total intracranial' in result.volumes


def test_seg_fine_tuning_starts_from_a_run_state(maps, tmp_path, capsys):
    """A seg fine-tune starts from another run's state.pt or from exported seg weights (Keras
    .h5 in RAS layout, brought back to the training layout); anything else is refused with a
    message that names it."""
    seg = seg_args(maps, tmp_path / 'a', 1)
    assert main(seg) == 0
    tuned = seg_args(maps, tmp_path / 'b', 0)
    assert main([*tuned, '--init', str(tmp_path / 'a' / 'state.pt')]) == 0
    a = torch.load(tmp_path / 'a' / 'state.pt', weights_only=True)['net']
    b = torch.load(tmp_path / 'b' / 'state.pt', weights_only=True)['net']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from synthbids.train.loop import init_weights

    from_h5 = seg_args(maps, tmp_path / 'c', 0)
    assert main([*from_h5, '--init', str(tmp_path / 'a' / 'best.h5')]) == 0
    c = torch.load(tmp_path / 'c' / 'state.pt', weights_only=True)['net']
    expected = init_weights(tmp_path / 'a' / 'best.h5', 'cpu')
    assert all(torch.allclose(c[k], expected[k], atol=1e-7) for k in expected)
    capsys.readouterr()
    (tmp_path / 'junk.pt').write_bytes(b'not weights')
    refused = seg_args(maps, tmp_path / 'd', 0)
    assert main([*refused, '--init', str(tmp_path / 'junk.pt')]) != 0
    err = capsys.readouterr().err
    assert 'junk.pt: cannot start from it' in err and 'state.pt' in err


def test_freeze_bn_trains_weights_but_keeps_batch_norm_statistics(maps, tmp_path):
    """--freeze-bn fine-tunes with the running statistics that inference uses: convolutions
    learn, the statistics stay those of the starting state (also across validation and the
    exports in between)."""
    seg = seg_args(maps, tmp_path / 'a', 2)
    assert main(seg) == 0
    tuned = seg_args(maps, tmp_path / 'b', 4)
    assert main([*tuned, '--init', str(tmp_path / 'a' / 'state.pt'), '--freeze-bn']) == 0
    a = torch.load(tmp_path / 'a' / 'state.pt', weights_only=True)['net']
    b = torch.load(tmp_path / 'b' / 'state.pt', weights_only=True)['net']
    stats = [k for k in a if k.endswith(('running_mean', 'running_var'))]
    convs = [k for k in a if k.endswith('weight') and a[k].ndim == 5]
    assert stats and convs
    assert all(torch.equal(a[k], b[k]) for k in stats)
    assert any(not torch.equal(a[k], b[k]) for k in convs)
    assert torch.load(tmp_path / 'b' / 'state.pt', weights_only=True)['step'] == 4
    # resuming without the flag keeps the run's frozen statistics
    assert main(['seg', '--out', str(tmp_path / 'b'), '--steps', '6', '-t', '1']) == 0
    c = torch.load(tmp_path / 'b' / 'state.pt', weights_only=True)
    assert c['step'] == 6 and all(torch.equal(a[k], c['net'][k]) for k in stats)
    # the model card tells how the weights were made
    from synthbids.train.cards import model_card

    card = model_card(tmp_path / 'b' / 'last.h5', {'history': 'Three stages.'}, 'ab' * 32, 'x')
    assert 'fine-tuned from `state.pt`; batch norm frozen (inference statistics).' in card
    assert 'MRI contrasts drawn per tissue p=0.5' in card and '\nThree stages.\n' in card


def test_sigterm_to_the_whole_job_saves_and_exits_cleanly(maps, tmp_path):
    """SLURM's scancel signals every process of the job, data workers included: the run
    saves its state and exits 0 instead of dying on the killed worker."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / 'term'
    cmd = [sys.executable, '-m', 'synthbids.cli.train', *args(maps, out, 100000)]
    cmd[cmd.index('--save-every') + 1] = '1000'
    cmd[cmd.index('--val-every') + 1] = '1000'
    proc = subprocess.Popen(
        [*cmd, '--workers', '1'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    history = out / 'history.tsv'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not history.exists() or history.read_text().count('\tloss\t') < 3
    ):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    step = torch.load(out / 'state.pt', weights_only=True)['step']
    assert step >= 3 and f'stopped at step {step}' in stdout


def test_resuming_keeps_the_recorded_recipe(maps, tmp_path, capsys):
    """Resuming with only --out and --steps continues the run as recorded (1 mm here, not the
    2 mm default); a contradicting recipe option is refused before anything is written."""
    out = tmp_path / 'r'
    assert main(args(maps, out, 1)) == 0
    assert main(['strip', '--out', str(out), '--steps', '2', '-t', '1', '--val-every', '5']) == 0
    meta = torch.load(out / 'last.pt', weights_only=True)['synthbids']
    assert meta['iterations'] == 2 and meta['conform']['voxsize'] == 1.0
    assert meta['recipe']['crop'] == [16, 16, 16] and meta['net']['features'] == 2
    before = (out / 'history.tsv').read_text()
    capsys.readouterr()
    assert main(['strip', '--out', str(out), '--steps', '3', '--voxsize', '2']) != 0
    err = capsys.readouterr().err
    assert 'run.json' in err and 'started with --voxsize 1.0' in err
    assert (out / 'history.tsv').read_text() == before
    assert main(['head', '--out', str(out), '--steps', '3']) != 0
    assert 'this run trains strip, not head' in capsys.readouterr().err


@pytest.mark.parametrize(
    ('cuda_build', 'message'),
    [
        (None, '--device cuda: this PyTorch build has no CUDA support (torch '),
        ('12.8', '--device cuda: no CUDA device is available (torch '),
    ],
)
def test_device_cuda_without_cuda_is_one_clear_line(
    maps, tmp_path, capsys, monkeypatch, cuda_build, message
):
    """--device cuda on a CPU-only PyTorch build (or with no GPU) stops before any work with
    one line saying why, not an "unexpected AssertionError" from deep inside torch."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', cuda_build)
    monkeypatch.setattr(torch.version, 'hip', None, raising=False)
    out = tmp_path / 'run'
    assert main([*args(maps, out, 1), '--device', 'cuda']) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'synthbids-train: error: {message}{torch.__version__}')
    assert err.count('\n') == 1 and 'unexpected' not in err and '--device cpu' in err
    assert not out.exists()  # checked before anything is read or written


def test_head_task_trains_exports_and_resumes(maps, tmp_path):
    """``synthbids-train head``: a few steps of the 7-tissue network write the run folder
    (state, history with every tissue's validation Dice, best/last weights that the strip
    loader reads), and a resumed run ends where an uninterrupted one does."""
    from synthbids.core.checkpoints import read_checkpoint
    from synthbids.synth.labelmaps import HEAD_CLASSES

    def head(out, steps):
        return ['head', *args(maps, out, steps)[1:]]

    assert main(head(tmp_path / 'a', 4)) == 0
    assert main(head(tmp_path / 'b', 2)) == 0
    assert {'state.pt', 'history.tsv', 'best.pt', 'last.pt', 'run.json'} <= {
        p.name for p in (tmp_path / 'b').iterdir()
    }
    before = read_checkpoint(tmp_path / 'b' / 'state.pt', full_state=True)
    assert before['step'] == 2
    assert main(head(tmp_path / 'b', 4)) == 0  # resume the same run to step 4
    state = read_checkpoint(tmp_path / 'b' / 'state.pt', full_state=True)
    assert state['step'] == 4  # and the loss trained the network:
    assert any(not torch.equal(v, state['net'][k]) for k, v in before['net'].items())
    rows = [line.split('\t') for line in (tmp_path / 'b' / 'history.tsv').read_text().splitlines()]
    assert [int(r[0]) for r in rows[1:] if r[1] == 'loss'] == [1, 2, 3, 4]
    kinds = {r[1] for r in rows[1:]}
    assert {'val_dice', *(f'val_dice_{n}' for n in HEAD_CLASSES[1:])} <= kinds
    a = read_checkpoint(tmp_path / 'a' / 'last.pt')
    b = read_checkpoint(tmp_path / 'b' / 'last.pt')
    for key, value in a['model_state_dict'].items():
        torch.testing.assert_close(value, b['model_state_dict'][key])
    best = read_checkpoint(tmp_path / 'b' / 'best.pt')
    meta = best['synthbids']
    assert meta['task'] == 'head' and meta['classes'] == list(HEAD_CLASSES)
    assert 0 <= meta['validation']['dice'] <= 1 and meta['iterations'] in (2, 4)
    # one output channel per tissue, loadable as a SynthStrip-layout network
    model = load_strip_model(tmp_path / 'b' / 'best.pt')
    x = torch.zeros(1, 1, 16, 16, 16)
    assert model.net(x).shape == (1, len(HEAD_CLASSES), 16, 16, 16)
