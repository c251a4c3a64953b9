"""One pipeline per tool: ``synthbids-strip``/``synthbids-seg`` and the BIDS App's interfaces
write identical files (voxels, data type, affine, qform/sform codes: the whole header) for the
same image and weights, because both call the core's per-image entry points."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from synthbids.cli.seg import main as seg_main
from synthbids.cli.strip import main as strip_main
from synthbids.interfaces import SynthSeg, SynthStrip


@pytest.fixture(scope='module')
def colin(ch2, tmp_path_factory):
    """Colin27 with sform_code 2 (aligned to a template) and qform_code 1 (scanner)."""
    img = nib.load(ch2)
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    out.set_qform(img.affine, code=1)
    out.set_sform(img.affine, code=2)
    path = tmp_path_factory.mktemp('colin') / 'sub-colin27_T1w.nii.gz'
    out.to_filename(path)
    return path


def same_file(a, b) -> None:
    a, b = nib.load(a), nib.load(b)
    assert a.header.binaryblock == b.header.binaryblock  # dtype, pixdim, qform/sform and codes
    assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))


def test_strip_cli_and_interface_write_identical_files(colin, tmp_path, monkeypatch):
    torch.set_num_threads(2)
    brain, mask = tmp_path / 'brain.nii.gz', tmp_path / 'mask.nii.gz'
    assert strip_main(['-i', str(colin), '-o', str(brain), '-m', str(mask), '-t', '2']) == 0
    node = tmp_path / 'node'
    node.mkdir()
    monkeypatch.chdir(node)
    from synthbids.core.weights import resolve

    out = SynthStrip(in_file=str(colin), model=str(resolve('strip').path), num_threads=2).run()
    same_file(brain, out.outputs.out_brain)
    same_file(mask, out.outputs.out_mask)
    assert nib.load(mask).header['sform_code'] == 2 and nib.load(mask).header['qform_code'] == 1


def test_seg_cli_and_interface_write_identical_files(colin, tmp_path, monkeypatch):
    seg, post = tmp_path / 'seg.nii.gz', tmp_path / 'post.nii.gz'
    code = seg_main(['--i', str(colin), '--o', str(seg), '--post', str(post), '--threads', '2'])
    assert code == 0
    node = tmp_path / 'node'
    node.mkdir()
    monkeypatch.chdir(node)
    out = SynthSeg(in_file=str(colin), qc=False, posteriors=True, num_threads=2).run()
    same_file(seg, out.outputs.out_dseg)
    same_file(post, out.outputs.out_probseg)
    header = nib.load(seg).header
    assert header.get_data_dtype() == np.int32 and header['sform_code'] == 2
