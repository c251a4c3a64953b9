"""The Synth generator: determinism, shapes, label handling, intensity statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthbids.synth.generator import GeneratorConfig, SynthGenerator, gaussian_blur
from synthbids.synth.labelmaps import (
    GENERATION_LABELS,
    SEG_LABELS_V2,
    LabelMap,
    label_tables,
    mode_downsample,
)
from synthbids.synth.targets import seg_target, signed_distance, strip_target

IDX = {v: i for i, v in enumerate(GENERATION_LABELS)}
#: generator settings that sample the map as it is: no affine, no deformation, centred crop
NO_WARP = dict(rotation_deg=0, scaling=0, shear=0, elastic_std_mm=0, crop_margin=0)


def toy_map(shape=(48, 48, 48)) -> LabelMap:
    """A head-like map: skin shell, skull, CSF, left/right hemispheres (2 vs 41), ventricles."""
    grid = np.indices(shape).astype(float)
    c = (np.array(shape) - 1)[:, None, None, None] / 2
    r = np.sqrt(((grid - c) ** 2).sum(0))
    m = np.zeros(shape, np.uint8)
    m[r < 22] = IDX[511]
    m[r < 20] = IDX[515]
    m[r < 17] = IDX[24]
    m[(r < 15) & (grid[0] < c[0])] = IDX[2]  # axis 0 is left-right in LIA
    m[(r < 15) & (grid[0] >= c[0])] = IDX[41]
    m[r < 4] = IDX[4]
    return LabelMap('toy', m, 2.0)


@pytest.fixture(scope='module')
def generator():
    cfg = GeneratorConfig(crop=(32, 32, 32), context=3, partial_fov=0.3, ct=0.2, pet=0.2)
    return SynthGenerator([toy_map()], cfg)


def test_same_seed_same_sample_and_different_seeds_differ(generator):
    a = generator.sample(torch.Generator().manual_seed(5))
    b = generator.sample(torch.Generator().manual_seed(5))
    c = generator.sample(torch.Generator().manual_seed(6))
    assert torch.equal(a.image, b.image) and torch.equal(a.indices, b.indices)
    assert a.info == b.info
    assert not torch.equal(a.image, c.image)


def test_shapes_ranges_and_label_preservation(generator):
    gen = torch.Generator().manual_seed(0)
    kinds = set()
    for _ in range(30):
        s = generator.sample(gen)
        kinds.add(s.info['kind'])
        assert s.image.shape == (1, 1, 32, 32, 32) and s.image.dtype == torch.float32
        assert float(s.image.min()) >= 0 and float(s.image.max()) <= 1
        assert s.indices.shape == (32, 32, 32) and s.context.shape == (38, 38, 38)
        assert torch.equal(s.context[3:-3, 3:-3, 3:-3], s.indices)
        present = set(s.indices.unique().tolist())
        # nearest sampling creates no new labels (a flip turns 4 into 43)
        assert present <= {IDX[v] for v in (0, 511, 515, 24, 2, 41, 4, 43)}
        assert s.valid.dtype == torch.bool
    assert kinds == {'mri', 'ct', 'pet'}


def mri_samples(generator, n: int, seed: int = 3):
    """The first ``n`` MRI-like samples with a full field of view."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        s = generator.sample(gen)
        if s.info['kind'] == 'mri' and bool(s.valid.all()):
            out.append(s)
    return out


def test_intensities_change_exactly_where_the_classes_change():
    """Without within-class noise, bias, gamma, blur or noise, an MRI sample is a lookup of
    the labels: one intensity per label, shared by the labels of one Gaussian class, and a
    different one for every other class (short of those clipped together at the top)."""
    cfg = GeneratorConfig(
        crop=(32, 32, 32),
        ct=0,
        pet=0,
        std_range=(0, 0),
        background_zero=1,  # the dark-background draws have their own spread
        bias=0,
        gamma_std=0,
        noise=0,
        resolution_keep=1,
        flip=0,
        **NO_WARP,
    )
    classes = label_tables().gaussian_class
    for s in mri_samples(SynthGenerator([toy_map()], cfg), 4):
        img, lab = s.image[0, 0], s.indices
        value = {}
        for v in lab.unique().tolist():
            inside = img[lab == v].unique()
            assert inside.numel() == 1, f'label {GENERATION_LABELS[v]}: {inside.numel()} values'
            value[v] = float(inside)
        by_class = {}
        for v, x in value.items():
            by_class.setdefault(int(classes[v]), set()).add(x)
        assert all(len(xs) == 1 for xs in by_class.values())  # a class has one intensity
        below_top = [x for (x,) in by_class.values() if x < 1]
        assert len(set(below_top)) == len(below_top) and len(by_class) >= 4


def test_intensities_follow_the_labels():
    """With every random effect on (within-class spread, bias field, gamma, resolution,
    noise), the labels still explain most of an MRI sample's intensity variance: voxels of one
    label vary much less than the image. A generator that ignored the labels would leave the
    within-label variance at the image's (ratio 1)."""
    generator = SynthGenerator([toy_map()], GeneratorConfig(crop=(32, 32, 32), ct=0, pet=0))
    ratios = []
    for s in mri_samples(generator, 8):
        img, lab = s.image[0, 0].double(), s.indices
        within = sum(((img[lab == v] - img[lab == v].mean()) ** 2).sum() for v in lab.unique())
        ratios.append(float(within / ((img - img.mean()) ** 2).sum()))
    # measured: median 0.35, from 0.14 to 0.72
    assert np.median(ratios) < 0.6 and max(ratios) < 0.9


def test_flip_swaps_left_and_right_labels():
    cfg = GeneratorConfig(crop=(32, 32, 32), flip=1.0, **NO_WARP)
    flipped = SynthGenerator([toy_map()], cfg).sample(torch.Generator().manual_seed(1))
    cfg.flip = 0.0
    plain = SynthGenerator([toy_map()], cfg).sample(torch.Generator().manual_seed(1))
    tables = label_tables()
    expected = torch.as_tensor(tables.flip)[plain.indices.flip(0)]
    assert torch.equal(flipped.indices, expected)


def test_resolution_blur_and_lr_tables():
    x = torch.zeros(1, 1, 21, 21, 21)
    x[0, 0, 10, 10, 10] = 1
    y = gaussian_blur(x, [2.0, 0.0, 0.0])
    assert y.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert y[0, 0, :, 10, 10].argmax() == 10 and y[0, 0, 10, :, 10].count_nonzero() == 1
    assert len(set(label_tables().gaussian_class)) == 48  # 54 labels, 6 shared pairs


def test_flip_table_swaps_hemispheres_and_nothing_else():
    """The generator's flip table, checked against facts it is not built from: flipping
    twice is the identity; a flipped label keeps its tissue, brain membership, head class and
    kind of intensity class; and its SynthSeg target is the mirror of the original's by
    FreeSurfer's names ('Left-X' <-> 'Right-X')."""
    from synthbids.core import labels as L
    from tests.core.test_seg_labels import mirror_by_name

    t = label_tables()
    n = len(GENERATION_LABELS)
    assert sorted(t.flip) == list(range(n)) and (t.flip[t.flip] == np.arange(n)).all()
    for table in (t.tissue, t.brain, t.brain_no_csf, t.head):
        assert (table[t.flip] == table).all()
    shared = np.bincount(t.gaussian_class)[t.gaussian_class] > 1
    assert (shared[t.flip] == shared).all()
    mirror = mirror_by_name(L.SEG_LABELS_V2)
    seg = np.asarray(SEG_LABELS_V2)[t.seg]
    assert [mirror[v] for v in seg] == seg[t.flip].tolist()
    # every side-less label stays, the 36 lateral ones move
    assert int((t.flip != np.arange(n)).sum()) == 36
    assert t.flip[IDX[16]] == IDX[16] and t.flip[IDX[24]] == IDX[24]


def test_targets():
    tables = label_tables()
    m = toy_map()
    ind = torch.as_tensor(m.indices.astype(np.int64))
    seg = seg_target(ind, tables)
    assert SEG_LABELS_V2[int(seg[24, 24, 24])] == 4  # ventricle
    assert SEG_LABELS_V2[int(seg[24, 24, 2])] == 0  # skin -> background
    sdt = strip_target(ind, 0, tables, voxsize=2.0)
    assert float(sdt[24, 24, 24]) == -5.0  # deep inside: clipped band
    assert float(sdt[0, 0, 0]) == 5.0
    brain = tables.brain[m.indices]
    assert (
        brain
        == (m.indices == IDX[24])
        | (m.indices == IDX[2])
        | (m.indices == IDX[41])
        | (m.indices == IDX[4])
    ).all()
    no_csf = strip_target(ind, 0, tables, voxsize=2.0, no_csf=True)
    assert (no_csf >= sdt).all() and (no_csf > sdt).any()  # a smaller mask
    d = signed_distance(np.pad(np.ones((4, 4, 4), bool), 4), 1.0, 10)
    assert d[4, 4, 4] == -1 and d[3, 4, 4] == 1


def test_mode_downsample_keeps_thin_majorities():
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2, :2, :2] = 3
    a[0, 0, 0] = 5
    out = mode_downsample(a, 2)
    assert out.shape == (2, 2, 2) and out[0, 0, 0] == 3 and out[1, 1, 1] == 0


def test_tissue_contrast_draws_one_mean_per_tissue():
    """With ``tissue_contrast`` labels of one tissue (thalamus, pallidum: deep grey) look
    alike, within the per-label jitter, while per-label draws set them far apart."""
    shape = (32, 32, 32)
    m = np.full(shape, IDX[2], np.uint8)  # white matter around two deep grey nuclei
    m[6:14, 8:24, 8:24] = IDX[10]
    m[18:26, 8:24, 8:24] = IDX[13]

    def gaps(tissue_contrast):
        cfg = GeneratorConfig(
            crop=shape,
            ct=0,
            pet=0,
            tissue_contrast=tissue_contrast,
            tissue_jitter=0.05,
            bias=0,
            gamma_std=0,
            noise=0,
            resolution_keep=1,
            std_range=(0, 1),
            flip=0,
            **NO_WARP,
        )
        generator = SynthGenerator([LabelMap('nuclei', m, 1.0)], cfg)
        gen = torch.Generator().manual_seed(4)
        out = []
        for _ in range(10):
            s = generator.sample(gen)
            img, lab = s.image[0, 0], s.indices
            means = [float(img[lab == IDX[v]].mean()) for v in (10, 13, 2)]
            # thalamus-pallidum gap relative to the thalamus-white matter gap
            out.append(abs(means[0] - means[1]) / max(abs(means[0] - means[2]), 1e-3))
        return np.array(out)

    shared, independent = gaps(1.0), gaps(0.0)
    # means within +-5 % of one tissue mean differ by at most ~10 % of the intensity range
    assert np.median(shared) < 0.2
    assert np.median(independent) > 0.3
    assert GeneratorConfig.for_task('seg').tissue_contrast > 0
    assert GeneratorConfig.for_task('strip').tissue_contrast == 0


def test_focused_crops_sit_in_the_brain():
    """``focus`` centres crops in the brain's bounding box even when the brain is far from the
    map's centre (whole-head maps at coarse grids); uniform crops mostly miss it."""
    shape = (64, 64, 64)
    grid = np.indices(shape)
    r = np.sqrt(((grid - np.array([16, 16, 44])[:, None, None, None]) ** 2).sum(0))
    m = np.full(shape, IDX[511], np.uint8)
    m[r < 10] = IDX[2]
    brain_map = LabelMap('off-centre', m, 2.0)

    def brain_fraction(focus):
        cfg = GeneratorConfig(crop=(24, 24, 24), focus=focus, ct=0, pet=0)
        generator = SynthGenerator([brain_map], cfg)
        gen = torch.Generator().manual_seed(3)
        return np.mean(
            [float((generator.sample(gen).indices == IDX[2]).float().mean()) for _ in range(12)]
        )

    focused, uniform = brain_fraction(1.0), brain_fraction(0.0)
    # the 10-voxel ball fills 30 % of a 24^3 crop centred on it (measured mean: 16 %, with the
    # random affine, deformation and jitter; uniform crops: 0.02 %)
    assert focused > 0.10
    assert focused > 3 * uniform
    assert (
        GeneratorConfig.for_task('seg').focus > 0 and GeneratorConfig.for_task('strip').focus == 0
    )


def test_head_task_sees_dark_air_in_most_mri_draws():
    """The head task's air (label 0) is the darkest class in most MRI draws, as in real MRI
    and CT, where SynthStrip's generator draws it at random 70 % of the time."""
    shape = (32, 32, 32)
    m = np.zeros(shape, np.uint8)
    m[6:26, 6:26, 6:26] = IDX[511]
    m[10:22, 10:22, 10:22] = IDX[2]
    toy = LabelMap('head', m, 2.0)

    def dark_fraction(task):
        cfg = GeneratorConfig.for_task(
            task, crop=(32, 32, 32), ct=0, pet=0, partial_fov=0, bias=0.0, focus=0.0
        )
        generator = SynthGenerator([toy], cfg)
        gen = torch.Generator().manual_seed(5)
        dark = []
        for _ in range(40):
            s = generator.sample(gen)
            img, lab = s.image[0, 0], s.indices
            air = float(img[lab == IDX[0]].mean())
            dark.append(air < min(float(img[lab == IDX[v]].mean()) for v in (511, 2)))
        return np.mean(dark)

    head, strip = dark_fraction('head'), dark_fraction('strip')
    assert head >= 0.8  # 85 % dark or zero by construction, plus random draws that are darkest
    assert strip < head - 0.2
