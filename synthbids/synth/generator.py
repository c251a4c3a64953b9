"""The Synth generator: random-contrast, random-resolution training images from label maps.

One call of :meth:`SynthGenerator.sample` follows SynthSeg's generative model
(``SPEC-synth.md`` §3.2) with SynthStrip's additions for "any image":

1. pick a label map; random affine + diffeomorphic elastic deformation; random crop;
2. left-right flip (p = 0.5) swapping left and right labels;
3. intensities: a Gaussian mixture with one random class per label (MRI-like, any contrast),
   optionally one random class per *tissue* (all deep grey nuclei alike, as in real T1w and
   T2w scans: structures told apart by shape, not intensity), or tissue-based CT-like
   (Hounsfield units, random window) or PET-like (smooth uptake) profiles;
4. smooth multiplicative bias field, min-max normalisation and a random gamma;
5. random acquisition resolution: slice-thickness blur, nearest downsampling, trilinear
   upsampling; additive noise; partial field of view (a half-space blanked out);
6. the inference normalisation (minus minimum, over the 99th percentile, clipped to [0, 1]).

Everything runs in torch on the device of the label maps (GPU when available) and is fully
determined by the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from .labelmaps import TISSUE_TYPES, LabelMap, LabelTables, label_tables
from .spatial import (
    integrate_svf,
    random_affine,
    random_velocity,
    sample_nearest,
    source_coordinates,
)

#: Per tissue type: the range of CT values (Hounsfield units) and of relative PET uptake.
TISSUE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    'background': ((-1010, -950), (0.0, 0.02)),
    'gm': ((34, 46), (0.8, 1.0)),
    'wm': ((20, 32), (0.2, 0.45)),
    'deep_gm': ((30, 42), (0.6, 1.0)),
    'csf': ((0, 15), (0.0, 0.1)),
    'bone': ((400, 1800), (0.02, 0.1)),
    'skin': ((20, 60), (0.05, 0.2)),
    'soft': ((20, 60), (0.05, 0.25)),
    'fat': ((-120, -60), (0.02, 0.1)),
    'eye': ((5, 25), (0.1, 0.3)),
    'vessel': ((30, 70), (0.2, 0.6)),
}


@dataclass
class GeneratorConfig:
    """Ranges of the random draws. Lengths in mm unless stated; defaults from SynthSeg."""

    crop: tuple[int, int, int] = (96, 96, 96)  # output shape, voxels of the map grid
    rotation_deg: float = 15.0
    scaling: float = 0.2
    shear: float = 0.012
    elastic_std_mm: float = 4.0
    elastic_control: int = 11
    flip: float = 0.5
    mean_range: tuple[float, float] = (0.0, 250.0)
    std_range: tuple[float, float] = (0.0, 30.0)
    background_zero: float = 0.05
    background_dark: float = 0.25
    bias: float = 0.95
    bias_std: float = 0.7
    gamma_std: float = 0.5
    resolution_keep: float = 0.05
    resolution_iso: float = 0.10
    max_res_iso: float = 4.0
    max_res_aniso: float = 8.0
    noise: float = 0.5
    noise_max: float = 0.05
    ct: float = 0.10
    pet: float = 0.05
    partial_fov: float = 0.0
    crop_margin: float = 0.1  # fraction of the crop allowed outside the map on each side
    focus: float = 0.0  # probability that the crop is centred in the brain's bounding box
    tissue_contrast: float = 0.0  # probability that MRI means are drawn per tissue, not label
    tissue_jitter: float = 0.1  # largest per-label relative deviation from its tissue's mean
    context: int = 0  # extra label voxels around the crop, for exact distance targets

    @classmethod
    def for_task(cls, task: str, **overrides) -> GeneratorConfig:
        """SynthStrip and head tasks see partial fields of view and more CT/PET; seg does not."""
        base = {'partial_fov': 0.25, 'ct': 0.1, 'pet': 0.07} if task.startswith('strip') else {}
        if task == 'head':
            # whole heads, CT as often as the strip tasks (bone is what CT shows best), and
            # realistic per-tissue contrasts half the time (skull, CSF and air alike in T1w).
            # Air is dark in real MRI and CT: with SynthStrip's mostly random background (70 %)
            # a head net at 3,000 steps still called bright facial fat air on a rendered T1w.
            # Half the crops are centred in the brain's box (uniform ones were 47 % air).
            base = {
                'partial_fov': 0.15,
                'ct': 0.15,
                'pet': 0.05,
                'tissue_contrast': 0.5,
                'background_zero': 0.2,
                'background_dark': 0.65,
                'focus': 0.5,
            }
        if task == 'seg':
            # uniform crops of a whole-head map are mostly outside the brain at coarse grids
            # (measured: 73-97 % background in 48^3 crops at 3 mm); seg learns from the brain.
            # Per-label contrasts alone taught a 3 mm net to find nuclei by intensity: on
            # realistic T1w, where they look alike, it drew 4-18x too large blobs.
            base = {'focus': 0.9, 'tissue_contrast': 0.5}
        return cls(**{**base, **overrides})


@dataclass
class Sample:
    """One training example on the output crop grid."""

    image: torch.Tensor  # (1, 1, X, Y, Z) float32 in [0, 1], normalised as at inference
    indices: torch.Tensor  # (X, Y, Z) generation-label indices (after the flip)
    valid: torch.Tensor  # (X, Y, Z) bool: inside the simulated field of view
    context: torch.Tensor  # indices on the crop grown by ``config.context`` voxels per side
    info: dict = field(default_factory=dict)


class SynthGenerator:
    """Draws training samples from label maps (kept on ``device``)."""

    def __init__(
        self,
        maps: list[LabelMap],
        config: GeneratorConfig | None = None,
        device: str | torch.device = 'cpu',
    ):
        if not maps:
            raise ValueError('no label maps given')
        self.config = config or GeneratorConfig()
        self.device = torch.device(device)
        self.tables: LabelTables = label_tables()
        self.voxsize = maps[0].voxsize
        self.names = [m.name for m in maps]
        self.maps = [torch.as_tensor(m.indices.astype('int64'), device=self.device) for m in maps]
        t = self.tables
        self._flip = torch.as_tensor(t.flip, device=self.device)
        self._gauss = torch.as_tensor(t.gaussian_class, device=self.device)
        self._tissue = torch.as_tensor(t.tissue, device=self.device)
        # tissue type of each Gaussian class, and one class standing for each tissue type
        class_tissue = np.zeros(t.n_classes, dtype=np.int64)
        class_tissue[t.gaussian_class] = t.tissue
        first = np.zeros(len(TISSUE_TYPES), dtype=np.int64)
        for tissue in range(len(TISSUE_TYPES)):
            first[tissue] = np.flatnonzero(class_tissue == tissue)[0]
        self._class_tissue = torch.as_tensor(class_tissue, device=self.device)
        self._tissue_first_class = torch.as_tensor(first, device=self.device)
        # only focused crops need the brain's bounding box
        focus = self.config.focus > 0
        self._boxes = [_brain_box(m.indices, t) if focus else None for m in maps]

    # ------------------------------------------------------------------ draws
    def _u(self, gen, lo=0.0, hi=1.0, n=()):
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=self.device)

    def _p(self, gen, p: float) -> bool:
        return bool(self._u(gen) < p)

    def sample(self, gen: torch.Generator, map_index: int | None = None) -> Sample:
        cfg = self.config
        if map_index is None:
            map_index = int(torch.randint(len(self.maps), (1,), generator=gen, device=self.device))
        context = self._deform(gen, self.maps[map_index], self._boxes[map_index])
        flipped = self._p(gen, cfg.flip)
        if flipped:
            context = self._flip[context.flip(0)]
        m = cfg.context
        labels = context[m:-m, m:-m, m:-m] if m else context
        draw = self._u(gen)
        if draw < cfg.ct:
            image, kind = self._ct(gen, labels), 'ct'
        elif draw < cfg.ct + cfg.pet:
            image, kind = self._pet(gen, labels), 'pet'
        else:
            image, kind = self._mri(gen, labels), 'mri'
        image, res = self._resolution(gen, image, blur_min=2.0 if kind == 'pet' else 0.0)
        if self._p(gen, cfg.noise):
            image = image + self._u(gen, 0, cfg.noise_max) * torch.randn(
                image.shape, generator=gen, device=self.device
            )
        image = image.clamp_min(0)
        valid = torch.ones_like(labels, dtype=torch.bool)
        if self._p(gen, cfg.partial_fov):
            valid = self._half_space(gen, labels.shape)
            image = image * valid
        image = normalize_like_inference(image)
        info = {
            'map': self.names[map_index],
            'flipped': flipped,
            'kind': kind,
            'resolution_mm': [round(float(r), 2) for r in res],
        }
        return Sample(image[None, None], labels, valid, context, info)

    # ------------------------------------------------------------------ spatial
    def _deform(self, gen, volume: torch.Tensor, box=None) -> torch.Tensor:
        cfg = self.config
        shape = volume.shape
        linear = random_affine(gen, cfg.rotation_deg, cfg.scaling, cfg.shear, self.device)
        velocity = random_velocity(
            gen, shape, cfg.elastic_std_mm / self.voxsize, cfg.elastic_control, self.device
        )
        displacement = integrate_svf(velocity)
        crop = torch.tensor(cfg.crop, dtype=torch.float32, device=self.device)
        size = torch.tensor(shape, dtype=torch.float32, device=self.device)
        margin = cfg.crop_margin * crop
        lo = torch.minimum(-margin, size - crop + margin)
        hi = torch.maximum(size - crop + margin, -margin)
        offset = lo + (hi - lo) * self._u(gen, n=(3,))
        if cfg.focus and box is not None and self._p(gen, cfg.focus):
            offset = self._focused_offset(gen, box, size, crop, linear)
        offset = torch.floor(offset) - cfg.context
        out_shape = tuple(c + 2 * cfg.context for c in cfg.crop)
        coords = source_coordinates(out_shape, offset, shape, linear, displacement)
        return sample_nearest(volume, coords[0])

    def _focused_offset(self, gen, box, size, crop, linear) -> torch.Tensor:
        """Crop offset (deformed-map voxels) whose centre maps to a random point of the
        brain's bounding box: the box centre, moved by up to half the box's excess over the
        crop plus an eighth of the crop."""
        lo, hi = (torch.as_tensor(b, dtype=torch.float32, device=self.device) for b in box)
        spread = (hi - lo - crop).clamp_min(0) / 2 + crop / 8
        target = (lo + hi) / 2 + spread * self._u(gen, -1.0, 1.0, n=(3,))
        centre = (size - 1) / 2
        # source = centre + A (p - centre): the output point that samples ``target``
        p = centre + torch.linalg.solve(linear, target - centre)
        return p - crop / 2

    def _half_space(self, gen, shape) -> torch.Tensor:
        """Voxels on one side of a random axis-aligned plane through the central 60 %."""
        axis = int(torch.randint(3, (1,), generator=gen, device=self.device))
        cut = int(shape[axis] * float(self._u(gen, 0.2, 0.8)))
        keep = torch.zeros(shape, dtype=torch.bool, device=self.device)
        index = [slice(None)] * 3
        index[axis] = slice(cut, None) if self._p(gen, 0.5) else slice(0, cut)
        keep[tuple(index)] = True
        return keep

    # ------------------------------------------------------------------ intensities
    def _mri(self, gen, labels) -> torch.Tensor:
        cfg = self.config
        n = self.tables.n_classes
        means = self._u(gen, *cfg.mean_range, n=(n,))
        stds = self._u(gen, *cfg.std_range, n=(n,))
        if cfg.tissue_contrast and self._p(gen, cfg.tissue_contrast):
            means, stds = self._per_tissue(gen, means, stds)
        bg = int(self._gauss[0])
        draw = self._u(gen)
        if draw < cfg.background_zero:
            means[bg], stds[bg] = 0.0, 0.0
        elif draw < cfg.background_zero + cfg.background_dark:
            means[bg], stds[bg] = self._u(gen, 0, 15), self._u(gen, 0, 5)
        cls = self._gauss[labels]
        image = means[cls] + stds[cls] * torch.randn(
            labels.shape, generator=gen, device=self.device
        )
        if self._p(gen, cfg.bias):
            image = image * self._bias_field(gen, labels.shape)
        image = image.clamp(0, 300)
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-6)
        gamma = torch.exp(cfg.gamma_std * torch.randn(1, generator=gen, device=self.device))
        return image.clamp_min(0) ** gamma

    def _per_tissue(self, gen, means, stds):
        """Class means and SDs shared within each tissue type (the random draws of one class
        of that tissue), each class's mean moved by a relative jitter of at most
        ``U(0, tissue_jitter)``."""
        tissue_of_class = self._class_tissue
        first = self._tissue_first_class
        jitter = self._u(gen, 0, self.config.tissue_jitter)
        scale = 1 + jitter * self._u(gen, -1.0, 1.0, n=means.shape)
        return means[first[tissue_of_class]] * scale, stds[first[tissue_of_class]]

    def _tissue_values(self, gen, column: int, **override) -> torch.Tensor:
        """One random value per tissue type (TISSUE_TYPES order) from column ``column`` of
        :data:`TISSUE_RANGES` (0: CT, 1: PET), ``override`` replacing some ranges."""
        ranges = {**{t: r[column] for t, r in TISSUE_RANGES.items()}, **override}
        return torch.stack([self._u(gen, *ranges[name]) for name in TISSUE_TYPES])

    def _ct(self, gen, labels) -> torch.Tensor:
        enhanced = {'vessel': (120, 300)} if self._p(gen, 0.3) else {}  # contrast agent
        values = self._tissue_values(gen, 0, **enhanced)
        tissue = self._tissue[labels]
        image = values[tissue] + self._u(gen, 2, 15) * torch.randn(
            labels.shape, generator=gen, device=self.device
        )
        windows = [(0.0, 80.0), (-100.0, 300.0), (-1000.0, 2000.0), (-200.0, 1500.0)]
        lo, hi = windows[int(torch.randint(len(windows), (1,), generator=gen, device=self.device))]
        return ((image.clamp(lo, hi) - lo) / (hi - lo)).clamp(0, 1)

    def _pet(self, gen, labels) -> torch.Tensor:
        values = self._tissue_values(gen, 1)
        image = values[self._tissue[labels]]
        image = image * (1 + 0.2 * torch.randn(labels.shape, generator=gen, device=self.device))
        return image.clamp_min(0) / image.max().clamp_min(1e-6)

    def _bias_field(self, gen, shape) -> torch.Tensor:
        std = self._u(gen, 0, self.config.bias_std)
        coarse = torch.randn((1, 1, 4, 4, 4), generator=gen, device=self.device) * std
        field = F.interpolate(coarse, size=tuple(shape), mode='trilinear', align_corners=True)
        return torch.exp(field[0, 0])

    # ------------------------------------------------------------------ resolution
    def _resolution(self, gen, image, blur_min=0.0):
        """Simulate an acquisition at a random resolution (mm) and slice thickness."""
        cfg = self.config
        draw = self._u(gen)
        if draw < cfg.resolution_keep:
            res = torch.ones(3, device=self.device)
        elif draw < cfg.resolution_keep + cfg.resolution_iso:
            res = self._u(gen, 1, cfg.max_res_iso, n=(3,))
        else:
            res = torch.ones(3, device=self.device)
            axis = int(torch.randint(3, (1,), generator=gen, device=self.device))
            res[axis] = self._u(gen, 1, cfg.max_res_aniso)
        if blur_min:  # PET: always low resolution and smooth
            res = torch.maximum(res, self._u(gen, 3.5, 6.0) * torch.ones(3, device=self.device))
        thickness = 1 + (res - 1) * self._u(gen, n=(3,))
        sigma_mm = 0.75 * thickness * self._u(gen, 1 / 1.03, 1.03, n=(3,))
        sigma_mm = torch.maximum(sigma_mm, torch.full_like(sigma_mm, blur_min))
        # the map grid already has voxsize resolution: blur only what exceeds it
        sigma = torch.sqrt(torch.clamp(sigma_mm**2 - (0.75 * self.voxsize) ** 2, min=0))
        sigma = sigma / self.voxsize
        x = gaussian_blur(image[None, None], sigma)
        factor = torch.clamp(res / self.voxsize, min=1.0)
        if bool((factor > 1.01).any()):
            low = [max(1, int(n / float(f))) for n, f in zip(image.shape, factor)]
            x = F.interpolate(x, size=low, mode='nearest')
            x = F.interpolate(x, size=tuple(image.shape), mode='trilinear', align_corners=True)
        return x[0, 0], res


def gaussian_blur(x: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, X, Y, Z) with per-axis sigma (voxels; 0 = none)."""
    for axis, s in enumerate(sigma):
        s = float(s)
        if s < 0.1:
            continue
        radius = max(1, int(math.ceil(3 * s)))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / s) ** 2)
        k = k / k.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        x = F.conv3d(F.pad(x, pad, mode='replicate'), k.reshape(shape))
    return x


def normalize_like_inference(image: torch.Tensor) -> torch.Tensor:
    """The SynthStrip input normalisation: minus the minimum, over the 99th percentile,
    clipped to [0, 1] (also a sensible range for SynthSeg's [0, 1] rescaling)."""
    image = image - image.min()
    flat = image.reshape(-1)
    k = max(1, int(round(0.99 * (flat.numel() - 1))) + 1)
    p99 = flat.kthvalue(k).values
    if float(p99) <= 0:
        p99 = flat.max().clamp_min(1e-6)
    return (image / p99).clamp(0, 1)


def _brain_box(indices: np.ndarray, tables: LabelTables) -> tuple[np.ndarray, np.ndarray] | None:
    """First and last voxel of the map's SynthSeg labels (the brain) on each axis."""
    inside = np.argwhere(tables.seg[indices] > 0)
    if not len(inside):
        return None
    return inside.min(0).astype('float32'), inside.max(0).astype('float32')
