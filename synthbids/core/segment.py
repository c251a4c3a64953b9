"""SynthSeg as a library call: load the networks once, then segment any number of images.

>>> model = load_seg_model(parc=True, qc=True)          # resolves weights (see core.weights)
>>> result = segment('T1w.nii.gz', model)
>>> result.labels, result.volumes['total intracranial'], result.qc

The pipeline is FreeSurfer's ``mri_synthseg`` (2.0, 1.0 with ``v1``, the robust cascade,
parcellation, QC, Photo-SynthSeg with ``photo=``): loading in :mod:`.seg_model`,
preprocessing in :mod:`.seg_preprocess`, networks in :mod:`.seg_nets` run by
:mod:`.seg_inference` (official Keras weights converted by :mod:`.seg_keras`), postprocessing
in :mod:`.seg_postprocess`, Photo-SynthSeg's label lists in :mod:`.seg_photo`, the optional
intensity refinement of the posteriors in :mod:`.seg_refine`. :func:`segment_file` runs one
image and writes its files (with ``ctab``, a FreeSurfer colour table embedded in ``.mgz`` label
images, :mod:`.seg_ctab`): ``synthbids-seg`` and the BIDS App both call it.

Test-time augmentation (default) averages the blurred posteriors of
the image and of its left-right flip; ``fast`` keeps only the first; the robust cascade runs
stage 1 -> denoiser -> stage 2 and implies ``fast``. Volumes are sums of soft posteriors;
parcel volumes are rescaled per hemisphere to the cortex (``parc_compat`` for the old rule).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .geometry import sample_nearest
from .imageio import OutputSet, Volume, image_on_grid, load_volume, split_ext
from .seg_ctab import ColorTable, is_mgh, write_mgh
from .seg_inference import mirror, run_networks, run_parcellation, run_qc
from .seg_model import SegModel, load_seg_model
from .seg_photo import refuse as photo_refuse
from .seg_postprocess import (
    argmax_channels,
    channel_sums,
    clean_posteriors,
    compute_volumes,
    pad_crop,
    qc_scores,
)
from .seg_preprocess import Prepared, preprocess

__all__ = ['SegModel', 'SegResult', 'load_seg_model', 'segment', 'segment_file']

log = logging.getLogger(__name__)

#: Data type of written label images (``mri_synthseg`` writes int32).
LABEL_DTYPE = np.int32


@dataclass
class SegResult:
    """Outputs of :func:`segment` (see the module docstring)."""

    labels: np.ndarray
    affine: np.ndarray
    volumes: dict[str, float]
    qc: dict[str, float] | None = None
    posteriors: np.ndarray | None = None
    posterior_labels: list[int] = field(default_factory=list)
    resampled: np.ndarray | None = None
    resampled_affine: np.ndarray | None = None
    weights: list = field(default_factory=list)
    posteriors_affine: np.ndarray | None = None  # grid of ``posteriors`` (always 1 mm/native)
    tissues: np.ndarray | None = None  # (X, Y, Z, 3) GM, WM, CSF on the posteriors' grid
    volume_precision: str = 'float32'  # arithmetic of mri_synthseg's volumes (CSV formatting)
    refined: bool = False  # the posteriors went through the intensity refinement


def segment(
    image,
    model: SegModel,
    *,
    fast: bool = False,
    crop=None,
    ct: bool = False,
    keepgeom: bool = False,
    posteriors: bool = False,
    parc_compat: bool = False,
    autocrop: bool = False,
    tissues: bool = False,
    refine: bool | None = None,
    refine_options=None,
) -> SegResult:
    """Segment ``image`` (a path or a :class:`Volume` read with ``fdata=True``).
    ``autocrop``: analyse only the box around the non-background voxels (not with ``crop``).
    ``tissues``: also sum the posteriors into GM, WM and CSF probabilities (:mod:`.tissues`),
    on the posteriors' grid (``SegResult.posteriors_affine``), without keeping all of them.
    ``refine``: intensity refinement of the posteriors (:mod:`.seg_refine`) before anything
    is derived from them; ``None`` uses the weights' own default (on for weights packaged
    with synthbids that were measured with it, off for the official ones).
    ``refine_options``: its :class:`~.seg_refine.RefineOptions`."""
    if autocrop and crop is not None:
        raise UsageError('--autocrop cannot be used with --crop')
    if ct and model.photo is not None:
        raise photo_refuse('--ct')
    volume = image if isinstance(image, Volume) else load_volume(image, max_dims=5, fdata=True)
    prepared = preprocess(volume, crop=crop, ct=ct, divisor=model.divisor, autocrop=autocrop)
    fast = fast or model.robust
    if model.mirrored:
        raw = mirror(run_networks(model, np.ascontiguousarray(prepared.image[::-1]), fast))
    else:
        raw = run_networks(model, prepared.image, fast)
    cleaned = clean_posteriors(raw.posteriors, prepared.pad_idx, model.topology, fast)
    refined = model.refine if refine is None else bool(refine)
    if refined:
        from .seg_refine import refine_posteriors

        # ``cleaned`` is a view of the networks' output, ours to change in place
        refine_posteriors(cleaned, prepared.image[pad_crop(prepared.pad_idx)], refine_options)
    seg = np.asarray(model.labels, dtype=LABEL_DTYPE)[argmax_channels(cleaned)]
    float64 = prepared.crop_idx is not None  # the reference pastes crops into float64 arrays
    sums = channel_sums(cleaned, float64=float64)
    post_out = _posteriors_out(cleaned, prepared) if posteriors else None
    tissue_out = _tissues_out(cleaned, model.labels, prepared) if tissues else None
    del cleaned
    raw.posteriors = None
    qc = qc_scores(run_qc(model, raw.qc_index)) if model.qc is not None else None
    parc_sums = None
    if model.parc is not None:
        parc_sums = run_parcellation(model, prepared, raw.parc_index, seg)
    volumes = compute_volumes(
        sums,
        model.labels,
        prepared.im_res,
        not model.total_volume,
        parc_sums,
        parc_compat=parc_compat,
        names=model.names,
    )
    labels = _to_output_grid(seg, prepared, fill=0)
    affine = prepared.affine
    if keepgeom and prepared.resampled is not None:
        vox2vox = np.linalg.inv(prepared.affine) @ volume.affine
        labels = sample_nearest(labels, vox2vox, volume.shape[:3], fill=0)
        affine = np.asarray(volume.affine)
    return SegResult(
        labels=labels,
        affine=affine,
        volumes=volumes,
        qc=qc,
        posteriors=post_out,
        posterior_labels=list(model.labels),
        resampled=prepared.resampled,
        resampled_affine=prepared.affine if prepared.resampled is not None else None,
        weights=list(model.weights),
        posteriors_affine=prepared.affine if posteriors or tissues else None,
        tissues=tissue_out,
        volume_precision='float64' if float64 else 'float32',
        refined=refined,
    )


def _to_output_grid(data: np.ndarray, prepared: Prepared, fill) -> np.ndarray:
    """Paste the (cropped) aligned array into the aligned grid and undo the alignment."""
    if prepared.crop_idx is not None:
        full = np.full(prepared.aligned_shape + data.shape[3:], fill, dtype=data.dtype)
        c = prepared.crop_idx
        full[c[0] : c[3], c[1] : c[4], c[2] : c[5]] = data
        data = full
    return np.ascontiguousarray(prepared.alignment.undo(data))


def _posteriors_out(cleaned: np.ndarray, prepared: Prepared) -> np.ndarray:
    """(X, Y, Z, C) float32 posteriors on the output grid; background 1 outside a crop."""
    post = np.moveaxis(cleaned, 0, -1)
    if prepared.crop_idx is not None:
        full = np.zeros(prepared.aligned_shape + (post.shape[-1],), dtype=np.float32)
        full[..., 0] = 1
        c = prepared.crop_idx
        full[c[0] : c[3], c[1] : c[4], c[2] : c[5]] = post
        post = full
    return np.ascontiguousarray(prepared.alignment.undo(post), dtype=np.float32)


def _tissues_out(cleaned: np.ndarray, labels, prepared: Prepared) -> np.ndarray:
    """(X, Y, Z, 3) float32 GM, WM, CSF probabilities on the output grid; 0 outside a crop."""
    from .tissues import tissue_index

    sums = np.zeros((3,) + cleaned.shape[1:], dtype=np.float32)
    for channel, label in enumerate(labels):
        index = tissue_index(label)
        if index:
            sums[index - 1] += cleaned[channel]
    post = np.moveaxis(sums, 0, -1)
    if prepared.crop_idx is not None:
        full = np.zeros(prepared.aligned_shape + (3,), dtype=np.float32)
        c = prepared.crop_idx
        full[c[0] : c[3], c[1] : c[4], c[2] : c[5]] = post
        post = full
    return np.ascontiguousarray(prepared.alignment.undo(post), dtype=np.float32)


def segment_file(
    image,
    model: SegModel,
    seg: str | os.PathLike,
    *,
    posteriors: str | os.PathLike | None = None,
    resampled: str | os.PathLike | None = None,
    ctab: ColorTable | None = None,
    **options,
) -> tuple[SegResult, Volume]:
    """Segment one image (a path or a :class:`Volume` read with ``fdata=True``) and write its
    label image, and optionally its posteriors and the image resampled to 1 mm (written only
    when the input was resampled), all or nothing. ``ctab`` is embedded in a ``.mgz``/``.mgh``
    label image (``--addctab``; NIfTI files get none, as FreeSurfer's Python writer does).
    ``options`` are :func:`segment`'s. Returns the result and the input volume (for reports
    drawn from memory)."""
    volume = image if isinstance(image, Volume) else load_volume(image, max_dims=5, fdata=True)
    result = segment(volume, model, posteriors=posteriors is not None, **options)
    with OutputSet() as staged:
        labels = image_on_grid(result.labels, volume, result.affine, seg)
        if ctab is not None and is_mgh(seg):
            staged.add_written(seg, lambda tmp: write_mgh(labels, tmp, ctab), split_ext(seg)[1])
        else:
            if ctab is not None:
                log.warning('%s: NIfTI files carry no colour table; use .mgz for --addctab', seg)
            staged.add(labels, seg)
        if posteriors is not None:
            grid = result.posteriors_affine
            staged.add(image_on_grid(result.posteriors, volume, grid, posteriors), posteriors)
        if resampled is not None and result.resampled is not None:
            grid = result.resampled_affine
            staged.add(image_on_grid(result.resampled, volume, grid, resampled), resampled)
    return result, volume
