"""Photo-SynthSeg (``--photo``) with photo-style weights and ``.npy`` lists made here.

The lists are written in a different order from SynthSeg 2.0's own (pairs shuffled, padding
entries whose names and classes must never be picked), the networks are intensity-band
networks with noise (asymmetric, so the flip average and the mirroring both change results).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import nibabel as nib
import numpy as np
import pytest

from synthbids.core import labels as L
from synthbids.core import seg_photo as P
from synthbids.core import weights as W
from synthbids.core.errors import UsageError, WeightsError
from synthbids.core.seg_keras import write_keras_h5
from synthbids.core.segment import load_seg_model, segment
from tests.seg_fixtures import TWINS, banded_network, tiny_parc_network, write_photo_lists

NEUTRAL = (0, 14, 15, 16, 24)
#: the crop makes the padded grid 64^3 (fast) and the padding symmetric on every axis of
#: the 40 x 48 x 36 test image, so a mirrored image lands exactly on the mirrored grid
CROP = [64, 64, 64]


def photo_both_list(seed: int = 0):
    """A ``both`` list over SynthSeg 2.0's labels: the 5 neutral labels, then the left and the
    right halves with the pairs in a shuffled order and a (0, 0) padding pair; names and
    classes follow each entry (padding entries get ones that must not be used)."""
    pairs = list(L.LR_PAIRS)
    np.random.default_rng(seed).shuffle(pairs)
    pairs.insert(3, (0, 0))
    raw = [*NEUTRAL, *[a for a, _ in pairs], *[b for _, b in pairs]]
    padding = [i >= len(NEUTRAL) and lab == 0 for i, lab in enumerate(raw)]
    names = ['padding' if pad else f'photo {L.name(lab)}' for lab, pad in zip(raw, padding)]
    topology = [99 if pad else L.TOPOLOGY_CLASS[lab] for lab, pad in zip(raw, padding)]
    return raw, names, topology


SINGLE = [0, 24, 2, 3, 41, 42]  # what a single-hemisphere list may hold, unsorted
SINGLE_TOPOLOGY = [0, 0, 1, 1, 2, 2]


@pytest.fixture(scope='module')
def photo_models(tmp_path_factory):
    """A model folder: the same noisy band network as SynthSeg 2.0 and as Photo-SynthSeg
    ``both`` (with the shuffled list), a single-hemisphere network, and a parcellation."""
    folder = tmp_path_factory.mktemp('photo')
    net = banded_network(L.SEG_LABELS_V2, twins=TWINS)
    write_keras_h5(net, folder / 'synthseg_2.0.h5')
    shutil.copy(folder / 'synthseg_2.0.h5', folder / 'synthseg_photo_both_1.0.h5')
    write_photo_lists(folder, 'both', *photo_both_list())
    single = banded_network(sorted(SINGLE), twins=TWINS)
    write_keras_h5(single, folder / 'synthseg_photo_single_1.0.h5')
    names = [f'single {lab}' for lab in SINGLE]
    write_photo_lists(folder, 'single', SINGLE, names, SINGLE_TOPOLOGY)
    write_keras_h5(tiny_parc_network(), folder / 'synthseg_parc_2.0.h5', prefix='unet_parc_')
    return folder


def asymmetric_image(path, mirror: bool = False):
    """A 40 x 48 x 36 head-like image whose pattern is not symmetric along its first axis."""
    shape = (40, 48, 36)
    rng = np.random.default_rng(0)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    r = np.sqrt((((grid - centre) / (np.array(shape)[:, None, None, None] / 3)) ** 2).sum(0))
    data = np.where(
        r < 1,
        100 * (1 - r) + 30 * np.sin(grid[0] / 3) + 10 * rng.random(shape),
        5 * rng.random(shape),
    )
    if mirror:
        data = data[::-1]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20, -24, -18]
    nib.Nifti1Image(data.astype(np.float32), affine).to_filename(path)
    return path


# --------------------------------------------------------------------------- lists


def test_flip_indices_come_from_the_list_not_from_synthseg():
    raw, _, _ = photo_both_list(seed=3)
    labels = sorted(set(raw))
    assert P.flip_indices(raw, 5) == L.flip_indices(labels)
    # labels SynthSeg knows nothing about pair up by their place in the halves
    raw = [0, 14, 15, 16, 24, 100, 7, 0, 300, 46, 0]
    labels = sorted(set(raw))
    flip = P.flip_indices(raw, 5)
    partner = {100: 300, 300: 100, 7: 46, 46: 7}
    assert [labels[i] for i in flip] == [partner.get(lab, lab) for lab in labels]
    with pytest.raises(WeightsError, match='do not split into 5 neutral labels'):
        P.flip_indices([0, 14, 15, 16, 24, 2, 41, 3], 5)


def test_flip_indices_of_the_synthseg_2_list(shared_dir):
    """SynthSeg 2.0's own 55-entry list (19 neutral) rebuilt from the reference's first
    indices, padding zeros elsewhere, gives the reference's flip indices."""
    tables = json.loads((shared_dir / 'golden/synthseg/synthseg_label_tables.json').read_text())
    ref = tables['synthseg2']
    raw = [0] * 55
    for lab, i in zip(ref['labels_segmentation_sorted'], ref['unique_idx_into_label_file']):
        raw[i] = lab
    assert P.flip_indices(raw, 19) == ref['flip_indices']


def test_lists_are_read_beside_the_weights(photo_models):
    lists = P.read_lists(photo_models / 'synthseg_photo_both_1.0.h5', 'both')
    raw, names, topology = photo_both_list()
    assert lists.labels == L.SEG_LABELS_V2
    first = {lab: raw.index(lab) for lab in lists.labels}
    assert lists.names == tuple(names[first[lab]] for lab in lists.labels)
    assert lists.topology == tuple(topology[first[lab]] for lab in lists.labels)
    assert 'padding' not in lists.names and 99 not in lists.topology
    assert lists.flip == tuple(L.flip_indices(lists.labels))
    single = P.read_lists(photo_models / 'synthseg_photo_single_1.0.h5', 'right')
    assert single.labels == tuple(sorted(SINGLE)) and single.flip is None and single.mirrored
    assert single.names[single.labels.index(42)] == 'single 42'


def test_missing_or_inconsistent_lists_name_the_file(photo_models, tmp_path):
    folder = tmp_path / 'm'
    shutil.copytree(photo_models, folder)
    names = folder / 'synthseg_segmentation_names_photo_both_1.0.npy'
    np.save(names, np.array(['background', 'x']))
    with pytest.raises(WeightsError, match='holds 2 entries; the label list beside it has 35'):
        load_seg_model(folder, photo='both')
    names.unlink()
    with pytest.raises(WeightsError) as err:
        load_seg_model(folder, photo='both')
    assert str(err.value).startswith(f'{names}: not found beside the Photo-SynthSeg weights')
    labels = folder / 'synthseg_segmentation_labels_photo_single_1.0.npy'
    np.save(labels, np.array([0.5, 2, 3, 24, 41, 42]))
    with pytest.raises(WeightsError, match='not a list of integer labels'):
        load_seg_model(folder, photo='left')
    np.save(labels, np.array([0, 2, 3, 24, 41, 60]))
    write_keras_h5(banded_network(L.SEG_LABELS_V1), folder / 'synthseg_photo_single_1.0.h5')
    with pytest.raises(WeightsError, match='predicts 32 labels, the Photo-SynthSeg label list'):
        load_seg_model(folder, photo='left')


def test_registry_knows_both_photo_files_and_their_lists():
    entries = {e.kind: e for e in W.official_entries().values()}
    for mode, size in (('both', 159121352), ('left', 159114824)):
        entry = entries[P.kind(mode)]
        assert entry.bytes == size and len(entry.sha256) == 64
        key = f'SHA256E-s{entry.bytes}--{entry.sha256}.0.h5'
        md5 = hashlib.md5(key.encode()).hexdigest()  # git-annex "hashdirlower"
        assert entry.url.endswith(f'/annex/objects/{md5[:3]}/{md5[3:6]}/{key}/{key}')
        expected = [p.name for p in P.list_files(entry.file, mode).values()]
        assert list(entry.companions) == expected
        assert entry.missing_companions(f'/nowhere/{entry.file}') == expected


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize('flag', ['robust', 'v1', 'qc'])
def test_incompatible_options_are_refused(photo_models, flag):
    with pytest.raises(UsageError, match=f'^--{flag} is not compatible with Photo-SynthSeg'):
        load_seg_model(photo_models, photo='both', **{flag: True})


def test_ct_and_bad_modes_are_refused(photo_models, tmp_path):
    model = load_seg_model(photo_models, photo='left')
    with pytest.raises(UsageError, match='^--ct is not compatible with Photo-SynthSeg'):
        segment(asymmetric_image(tmp_path / 'a.nii.gz'), model, ct=True)
    with pytest.raises(UsageError, match="--photo must be left, right or both \\(got 'up'\\)"):
        load_seg_model(photo_models, photo='up')


def test_parc_warns_for_single_hemispheres_only(photo_models, caplog):
    with caplog.at_level(logging.WARNING):
        load_seg_model(photo_models, photo='right', parc=True)
        assert 'not well tested with single hemispheres (--photo right)' in caplog.text
        caplog.clear()
        load_seg_model(photo_models, photo='both', parc=True)
        load_seg_model(photo_models, photo='left')
    assert 'single hemispheres' not in caplog.text


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize('parc', [False, True])
def test_both_is_the_standard_path_with_the_photo_lists(photo_models, tmp_path, parc):
    """Same network and label set: ``--photo both`` (flip pairs, names and classes from the
    shuffled .npy lists) gives SynthSeg 2.0's labels and volumes, without the total."""
    src = asymmetric_image(tmp_path / 'img.nii.gz')
    standard = load_seg_model(photo_models, parc=parc)
    photo = load_seg_model(photo_models, photo='both', parc=parc)
    assert photo.flip_indices == standard.flip_indices and photo.topology == standard.topology
    ref = segment(src, standard, crop=CROP, posteriors=True)
    out = segment(src, photo, crop=CROP, posteriors=True)
    present = set(np.unique(out.labels))
    assert (parc or {3, 42} <= present) and 24 in present  # non-trivial, two-sided
    assert any(lab > 1000 for lab in present) == parc
    np.testing.assert_array_equal(out.labels, ref.labels)
    np.testing.assert_array_equal(out.posteriors, ref.posteriors)
    names = list(out.volumes)
    assert L.TOTAL_NAME not in names and list(ref.volumes)[0] == L.TOTAL_NAME
    assert names[: len(L.SEG_LABELS_V2) - 1] == [f'photo {L.name(x)}' for x in L.SEG_LABELS_V2[1:]]
    assert list(out.volumes.values()) == list(ref.volumes.values())[1:]
    assert ('ctx-lh-insula' in names) == parc
    # the flip average is what makes them equal: without it the result differs
    fast = segment(src, photo, crop=CROP, fast=True)
    assert (fast.labels != out.labels).sum() > 100


@pytest.mark.parametrize('parc', [False, True])
def test_right_on_a_mirrored_image_is_the_mirror_of_left(photo_models, tmp_path, parc):
    image = asymmetric_image(tmp_path / 'img.nii.gz')
    mirrored = asymmetric_image(tmp_path / 'mirrored.nii.gz', mirror=True)
    left = load_seg_model(photo_models, photo='left', parc=parc)
    right = load_seg_model(photo_models, photo='right', parc=parc)
    a = segment(image, left, crop=CROP, posteriors=True)
    b = segment(mirrored, right, crop=CROP, posteriors=True)
    assert len(np.unique(a.labels)) >= 4 + parc
    np.testing.assert_array_equal(b.labels, a.labels[::-1])
    np.testing.assert_allclose(b.posteriors, a.posteriors[::-1], atol=1e-6)
    assert list(b.volumes) == list(a.volumes)
    n = len(SINGLE) - 1  # structures; parcels follow, summed slab by slab in float32 (as
    # the reference sums them), here in the opposite order: rounding differs a little
    va, vb = list(a.volumes.values()), list(b.volumes.values())
    np.testing.assert_allclose(vb[:n], va[:n], rtol=1e-6)
    np.testing.assert_allclose(vb[n:], va[n:], rtol=2e-3)
    names = list(a.volumes)
    assert L.TOTAL_NAME not in names
    assert names[:5] == [f'single {lab}' for lab in sorted(SINGLE)[1:]]
    # no flip average (right != left on the same image), and right really mirrors
    c = segment(image, right, crop=CROP)
    assert (c.labels != a.labels).sum() > 100
