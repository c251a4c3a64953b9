"""Nipype interfaces over the SynthSeg core (:mod:`synthbids.core.segment`).

One node segments one image and writes what the derivatives need: the label image, the
regional volumes and (with the QC network) the QC scores as long-format TSVs, and optionally
the posteriors as a 4-D probseg. Models are loaded lazily and kept per worker; ``use_gpu`` and
``num_threads`` are ``nohash``.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from .reports import ReportletInputSpec, ReportletOutputSpec
from .synthstrip import _device, output_name, set_threads, weights_meta

_MODELS: dict = {}


class _SynthSegInputSpec(BaseInterfaceInputSpec):
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
    qc_threshold = traits.Float(0.65, usedefault=True, desc='QC scores below it are flagged')
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc='run on the GPU')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='CPU threads for torch')


class _SynthSegOutputSpec(TraitedSpec):
    out_dseg = File(exists=True, desc='label image (int16)')
    out_volumes = File(exists=True, desc='regional volumes, mm^3 (TSV: index, name, volume)')
    out_qc = File(desc='QC scores (TSV: structure, score, flag), with qc')
    out_probseg = File(desc='posteriors, 4-D float32, with posteriors')
    label_map = traits.List(traits.Str, desc='FreeSurfer names of the probseg frames')
    model_meta = traits.Dict(desc='ModelName, ModelWeights (name, SHA-256) and ModelSettings')


class SynthSeg(SimpleInterface):
    """Segment one image with SynthSeg (2.0, robust, with optional parcellation and QC)."""

    input_spec = _SynthSegInputSpec
    output_spec = _SynthSegOutputSpec

    def _run_interface(self, runtime):
        import numpy as np

        from synthbids.bids import lut
        from synthbids.core.imageio import OutputSet, image_like, load_volume
        from synthbids.core.segment import load_seg_model, segment

        set_threads(self.inputs.num_threads)
        device = _device(self.inputs.use_gpu)
        inp = self.inputs
        model_file = inp.model if inp.model else None
        key = (model_file, inp.robust, inp.parc, inp.qc, str(device))
        if key not in _MODELS:
            _MODELS.clear()
            _MODELS[key] = load_seg_model(
                model_file, robust=inp.robust, parc=inp.parc, qc=inp.qc, device=device
            )
        result = segment(
            inp.in_file,
            _MODELS[key],
            fast=inp.fast,
            ct=inp.ct,
            keepgeom=inp.keepgeom,
            posteriors=inp.posteriors,
        )
        cwd = Path(runtime.cwd)
        dseg = cwd / output_name(inp.in_file, '_dseg')
        labels = np.asarray(result.labels, dtype=np.int16)
        with OutputSet() as staged:
            if inp.keepgeom:
                staged.add(image_like(labels, load_volume(inp.in_file), dseg), dseg)
            else:
                staged.add(_nifti(labels, result.affine), dseg)
            if inp.posteriors and result.posteriors is not None:
                probseg = cwd / output_name(inp.in_file, '_probseg')
                grid = getattr(result, 'posteriors_affine', None)
                grid = result.affine if grid is None else grid
                staged.add(_nifti(np.asarray(result.posteriors, np.float32), grid), probseg)
                self._results['out_probseg'] = str(probseg)
                self._results['label_map'] = lut.fs_names(result.posterior_labels)
        self._results['out_dseg'] = str(dseg)
        self._results['out_volumes'] = str(
            write_volumes(cwd / 'volumes.tsv', result.volumes, lut.index_of_volume_name())
        )
        if result.qc is not None:
            self._results['out_qc'] = str(write_qc(cwd / 'qc.tsv', result.qc, inp.qc_threshold))
        self._results['model_meta'] = {
            'ModelName': 'SynthSeg 2.0' + (' robust' if inp.robust else ''),
            'ModelWeights': weights_meta(result.weights),
            'ModelSettings': {
                'Robust': inp.robust,
                'Parcellation': inp.parc,
                'QC': inp.qc,
                'Fast': inp.fast,
                'CT': inp.ct,
                'KeepGeometry': inp.keepgeom,
            },
        }
        return runtime


def _nifti(data, affine):
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units('mm', 'sec')
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


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
    """:class:`SynthSeg` that also draws the labels over the image (SVG)."""

    input_spec = _SynthSegRPTInputSpec
    output_spec = _SynthSegRPTOutputSpec

    def _run_interface(self, runtime):
        runtime = super()._run_interface(runtime)
        from synthbids.bids import lut
        from synthbids.reports.reportlets import plot_segmentation

        out = Path(runtime.cwd) / self.inputs.out_report
        plot_segmentation(
            self.inputs.in_file, self._results['out_dseg'], out, lut.colors(self.inputs.parc)
        )
        self._results['out_report'] = str(out)
        return runtime
