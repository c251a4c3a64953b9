"""Nipype interfaces over the SynthStrip core (:mod:`synthbids.core.strip`).

Thin adapters: torch is imported inside ``_run_interface`` (building a graph stays light),
the model is loaded on first use and kept for the next image processed by the same worker,
and ``use_gpu``/``num_threads`` are ``nohash`` so switching device or threads reuses results.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from .reports import ReportletInputSpec, ReportletOutputSpec

_MODELS: dict = {}


def _device(use_gpu: bool):
    import torch

    if use_gpu and not torch.cuda.is_available():
        from synthbids.core.errors import SynthbidsError

        raise SynthbidsError('--gpu was given but no CUDA device is available')
    return torch.device('cuda' if use_gpu else 'cpu')


def set_threads(num_threads: int) -> None:
    import torch

    if num_threads and num_threads > 0:
        torch.set_num_threads(num_threads)


def weights_meta(weights) -> list[dict]:
    """Sidecar form of :class:`~synthbids.core.weights.WeightsFile` objects."""
    out = []
    for w in weights:
        d = w.as_dict()
        out.append(
            {
                'Name': d['name'],
                'File': d['file'],
                'SHA256': d['sha256'],
                'Source': d['source'],
                'Verified': d['verified'],
            }
        )
    return out


def output_name(in_file: str, suffix: str) -> str:
    """``<input name without extension><suffix>.nii.gz``."""
    from synthbids.core.imageio import split_ext

    stem, _ = split_ext(Path(in_file).name)
    return f'{stem}{suffix}.nii.gz'


class _SynthStripInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='image to skull-strip (3-D or 4-D)')
    model = File(exists=True, mandatory=True, desc='SynthStrip weights file')
    no_csf = traits.Bool(False, usedefault=True, desc='exclude extra-cerebral CSF (weights)')
    border = traits.Float(1.0, usedefault=True, desc='mask border threshold (mm)')
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc='run on the GPU')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='CPU threads for torch')


class _SynthStripOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc='brain mask (uint8) on the input grid')
    out_brain = File(exists=True, desc='input image with voxels outside the mask set to fill')
    model_meta = traits.Dict(desc='ModelName, ModelWeights (name, SHA-256) and ModelSettings')


class SynthStrip(SimpleInterface):
    """Skull-strip one image with SynthStrip; outputs keep the input grid and header."""

    input_spec = _SynthStripInputSpec
    output_spec = _SynthStripOutputSpec

    def _run_interface(self, runtime):
        from synthbids.core.imageio import OutputSet, image_like, load_volume
        from synthbids.core.strip import load_strip_model, strip

        set_threads(self.inputs.num_threads)
        device = _device(self.inputs.use_gpu)
        volume = load_volume(self.inputs.in_file)
        key = (str(Path(self.inputs.model).resolve()), self.inputs.no_csf, str(device))
        if key not in _MODELS:
            _MODELS.clear()  # one model per worker is enough
            _MODELS[key] = load_strip_model(
                self.inputs.model, no_csf=self.inputs.no_csf, device=device
            )
        model = _MODELS[key]
        result = strip(volume, model, border=self.inputs.border)
        mask = Path(runtime.cwd) / output_name(self.inputs.in_file, '_desc-brain_mask')
        brain = Path(runtime.cwd) / output_name(self.inputs.in_file, '_desc-brain')
        with OutputSet() as staged:
            staged.add(image_like(result.mask.astype('uint8'), volume, mask), mask)
            staged.add(image_like(result.stripped, volume, brain), brain)
        self._results['out_mask'] = str(mask)
        self._results['out_brain'] = str(brain)
        self._results['model_meta'] = {
            'ModelName': 'SynthStrip',
            'ModelWeights': weights_meta([result.weights] if result.weights else []),
            'ModelSettings': {'Border': self.inputs.border, 'NoCSF': self.inputs.no_csf},
        }
        return runtime


class _SynthStripRPTInputSpec(_SynthStripInputSpec, ReportletInputSpec):
    pass


class _SynthStripRPTOutputSpec(_SynthStripOutputSpec, ReportletOutputSpec):
    pass


class SynthStripRPT(SynthStrip):
    """:class:`SynthStrip` that also draws the mask contour over the image (SVG)."""

    input_spec = _SynthStripRPTInputSpec
    output_spec = _SynthStripRPTOutputSpec

    def _run_interface(self, runtime):
        runtime = super()._run_interface(runtime)
        from synthbids.reports.reportlets import plot_mask

        out = Path(runtime.cwd) / self.inputs.out_report
        plot_mask(self.inputs.in_file, self._results['out_mask'], out)
        self._results['out_report'] = str(out)
        return runtime
