"""Nipype interfaces over the SynthSeg core (:func:`synthbids.core.segment.segment_file`).

One node segments one image and writes what the derivatives need: the label image, the
regional volumes and (with the QC network) the QC scores as long-format TSVs, and optionally
the posteriors as a 4-D probseg. Images are written by the same entry point as
``synthbids-seg``'s, so they are identical for the same image and weights. Models are loaded
lazily and kept per worker (:mod:`.loaded`); ``use_gpu``, ``num_threads`` and
``model_sha256`` are ``nohash``.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from synthbids.config import SEG_OPTIONS, sidecar_settings

from . import loaded
from .loaded import NetworkInputSpec
from .reports import ReportletInputSpec, ReportletOutputSpec


class _SynthSegInputSpec(NetworkInputSpec):
    in_file = File(exists=True, mandatory=True, desc='image to segment')
    model = traits.Either(
        File(exists=True),
        Directory(exists=True),
        desc='SynthSeg weights file, or a folder with the official file names '
        '(default: the documented search)',
    )
    robust = traits.Bool(False, usedefault=True, desc='robust cascade (clinical scans)')
    parc = traits.Bool(False, usedefault=True, desc='parcellate the cortex (Desikan-Killiany)')
    qc = traits.Bool(False, usedefault=True, desc='predict QC scores')
    fast = traits.Bool(False, usedefault=True, desc='skip the flip test-time augmentation')
    ct = traits.Bool(False, usedefault=True, desc='the image is a CT (intensities clipped)')
    keepgeom = traits.Bool(False, usedefault=True, desc='write labels on the input grid')
    posteriors = traits.Bool(False, usedefault=True, desc='also write the posteriors')
    tissues = traits.Bool(
        False, usedefault=True, desc='also write GM/WM/CSF probabilities and a 3-class dseg'
    )
    refine = traits.Enum(
        'auto',
        'on',
        'off',
        usedefault=True,
        desc="intensity refinement of the posteriors (auto: the weights' own default)",
    )
    qc_threshold = traits.Float(0.65, usedefault=True, desc='QC scores below it are flagged')
    low_memory = traits.Bool(
        False,
        usedefault=True,
        nohash=True,
        desc='recompute the full-resolution features instead of keeping them (same results)',
    )


class _SynthSegOutputSpec(TraitedSpec):
    out_dseg = File(exists=True, desc='label image (int32, as mri_synthseg writes it)')
    out_volumes = File(exists=True, desc='regional volumes, mm^3 (TSV: index, name, volume)')
    out_qc = File(desc='QC scores (TSV: structure, score, flag), with qc')
    out_probseg = File(desc='posteriors, 4-D float32, with posteriors')
    label_map = traits.List(traits.Str, desc='FreeSurfer names of the probseg frames')
    out_tissue_dseg = File(desc='1 GM, 2 WM, 3 CSF on the input grid (uint8), with tissues')
    out_tissue_probseg = traits.List(
        File(exists=True), desc='GM, WM, CSF probabilities on the input grid, with tissues'
    )
    model_meta = traits.Dict(desc='ModelName, ModelWeights (name, SHA-256) and ModelSettings')


class SynthSeg(SimpleInterface):
    """Segment one image with SynthSeg (2.0, robust, with optional parcellation and QC)."""

    input_spec = _SynthSegInputSpec
    output_spec = _SynthSegOutputSpec

    def _run_interface(self, runtime):
        from synthbids.bids import lut
        from synthbids.core.imageio import load_volume
        from synthbids.core.segment import segment_file
        from synthbids.core.weights import model_name

        inp = self.inputs
        # the BIDS App reported a qform/sform mismatch once already, when it checked the input
        image = load_volume(inp.in_file, max_dims=5, fdata=True, warn_xforms=False)
        model = self._model()
        cwd = Path(runtime.cwd)
        dseg = cwd / loaded.output_name(inp.in_file, '_dseg')
        probseg = cwd / loaded.output_name(inp.in_file, '_probseg') if inp.posteriors else None
        options = {k: getattr(inp, k) for k in ('fast', 'ct', 'keepgeom', 'tissues')}
        options['refine'] = {'auto': None, 'on': True, 'off': False}[inp.refine]
        result, volume = segment_file(image, model, dseg, posteriors=probseg, **options)
        if inp.tissues:
            self._results.update(write_tissues(cwd, result, volume))
        self._results['out_dseg'] = str(dseg)
        if probseg is not None:
            self._results['out_probseg'] = str(probseg)
            self._results['label_map'] = lut.fs_names(result.posterior_labels)
        volumes = write_volumes(cwd / 'volumes.tsv', result.volumes, lut.index_of_volume_name())
        self._results['out_volumes'] = str(volumes)
        if result.qc is not None:
            self._results['out_qc'] = str(write_qc(cwd / 'qc.tsv', result.qc, inp.qc_threshold))
        kind = 'seg-robust' if inp.robust else 'seg'
        self._results['model_meta'] = {
            'ModelName': model_name(kind, model.weights[0]),
            'ModelWeights': [w.describe() for w in model.weights],
            'ModelSettings': sidecar_settings(
                {**{k: getattr(inp, k) for k in SEG_OPTIONS}, 'refine': result.refined}
            ),
        }
        self._in_memory = (result, volume)
        return runtime

    def _model(self):
        from synthbids.core.segment import load_seg_model

        inp = self.inputs
        loaded.set_threads(inp.num_threads)
        dev = loaded.device(inp.use_gpu)
        model = inp.model if inp.model else None
        sha = inp.model_sha256 or None
        key = (
            'seg',
            loaded.weights_key(model),
            inp.robust,
            inp.parc,
            inp.qc,
            inp.low_memory,
            str(dev),
        )
        return loaded.loaded_model(
            key,
            lambda: load_seg_model(
                model,
                robust=inp.robust,
                parc=inp.parc,
                qc=inp.qc,
                device=dev,
                low_memory=inp.low_memory,
                warn=False,
                sha256=sha if model and Path(model).is_file() else None,
            ),
        )


def write_tissues(cwd: Path, result, volume) -> dict:
    """The tissue probabilities of ``result`` brought to the input grid, and their 3-class
    dseg, written together (all or nothing)."""
    from synthbids.core.geometry import Grid
    from synthbids.core.imageio import OutputSet, image_like
    from synthbids.core.tissues import TISSUE_NAMES, on_grid, tissue_dseg

    source = Grid(result.tissues.shape[:3], result.posteriors_affine)
    probs = on_grid(result.tissues, source, Grid(volume.shape[:3], volume.affine))
    dseg = cwd / 'tissue_dseg.nii.gz'
    probsegs = [cwd / f'tissue_label-{name}_probseg.nii.gz' for name in TISSUE_NAMES]
    with OutputSet() as staged:
        staged.add(image_like(tissue_dseg(probs), volume, dseg), dseg)
        for channel, path in enumerate(probsegs):
            staged.add(image_like(probs[..., channel], volume, path), path)
    return {'out_tissue_dseg': str(dseg), 'out_tissue_probseg': [str(p) for p in probsegs]}


def write_volumes(path: Path, volumes: dict, index_of: dict) -> Path:
    """Long-format volume table in ``mri_synthseg``'s order (total intracranial first)."""
    from synthbids.bids.files import write_tsv

    rows = [
        {'index': index_of.get(name), 'name': name, 'volume': float(value)}
        for name, value in volumes.items()
    ]
    return write_tsv(path, ['index', 'name', 'volume'], rows)


def write_qc(path: Path, scores: dict, threshold: float) -> Path:
    from synthbids.bids.files import write_tsv

    rows = [
        {'structure': name, 'score': float(s), 'flag': 'fail' if s < threshold else 'pass'}
        for name, s in scores.items()
    ]
    return write_tsv(path, ['structure', 'score', 'flag'], rows)


class _SynthSegRPTInputSpec(_SynthSegInputSpec, ReportletInputSpec):
    pass


class _SynthSegRPTOutputSpec(_SynthSegOutputSpec, ReportletOutputSpec):
    pass


class SynthSegRPT(SynthSeg):
    """:class:`SynthSeg` that also draws the labels over the image (SVG), from the arrays in
    memory (the input is read once)."""

    input_spec = _SynthSegRPTInputSpec
    output_spec = _SynthSegRPTOutputSpec

    def _run_interface(self, runtime):
        runtime = super()._run_interface(runtime)
        import nibabel as nib

        from synthbids.bids import lut
        from synthbids.reports.reportlets import plot_segmentation

        result, volume = self._in_memory
        out = Path(runtime.cwd) / self.inputs.out_report
        image = loaded.in_memory(volume.frame(0), volume)
        labels = nib.Nifti1Image(result.labels, result.affine)
        plot_segmentation(image, labels, out, lut.colors(self.inputs.parc))
        self._results['out_report'] = str(out)
        return runtime
