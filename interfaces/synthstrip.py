"""Nipype interfaces over the SynthStrip core (:func:`synthbids.core.strip.strip_file`).

Thin adapters: torch is imported inside ``_run_interface`` (building a graph stays light),
the model is loaded on first use and kept for the next image processed by the same worker
(:mod:`.loaded`), and ``use_gpu``/``num_threads``/``model_sha256`` are ``nohash`` so switching
device or threads reuses results. Files are written by the same entry point as
``synthbids-strip``'s, so they are identical for the same image and weights.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from synthbids.config import STRIP_OPTIONS, sidecar_settings

from . import loaded
from .loaded import NetworkInputSpec
from .reports import ReportletInputSpec, ReportletOutputSpec


class _SynthStripInputSpec(NetworkInputSpec):
    in_file = File(exists=True, mandatory=True, desc='image to skull-strip (3-D or 4-D)')
    model = File(exists=True, mandatory=True, desc='SynthStrip weights file')
    no_csf = traits.Bool(False, usedefault=True, desc='exclude extra-cerebral CSF (weights)')
    border = traits.Float(1.0, usedefault=True, desc='mask border threshold (mm)')


class _SynthStripOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc='brain mask (uint8) on the input grid')
    out_brain = File(exists=True, desc='input image with voxels outside the mask set to fill')
    model_meta = traits.Dict(desc='ModelName, ModelWeights (name, SHA-256) and ModelSettings')


class SynthStrip(SimpleInterface):
    """Skull-strip one image with SynthStrip; outputs keep the input grid and header."""

    input_spec = _SynthStripInputSpec
    output_spec = _SynthStripOutputSpec

    def _run_interface(self, runtime):
        from synthbids.core.imageio import load_volume
        from synthbids.core.strip import load_strip_model, strip_file
        from synthbids.core.weights import model_name

        inp = self.inputs
        # the BIDS App reported a qform/sform mismatch once already, when it checked the input
        image = load_volume(inp.in_file, warn_xforms=False)
        loaded.set_threads(inp.num_threads)
        dev = loaded.device(inp.use_gpu)
        key = ('strip', loaded.weights_key(inp.model), inp.no_csf, str(dev))
        model = loaded.loaded_model(
            key,
            lambda: load_strip_model(
                inp.model, no_csf=inp.no_csf, device=dev, warn=False, sha256=inp.model_sha256
            ),
        )
        mask = Path(runtime.cwd) / loaded.output_name(inp.in_file, '_desc-brain_mask')
        brain = Path(runtime.cwd) / loaded.output_name(inp.in_file, '_desc-brain')
        result, volume = strip_file(image, model, out=brain, mask=mask, border=inp.border)
        self._results.update(out_mask=str(mask), out_brain=str(brain))
        self._results['model_meta'] = {
            'ModelName': model_name('strip-nocsf' if inp.no_csf else 'strip', model.weights),
            'ModelWeights': [model.weights.describe()],
            'ModelSettings': sidecar_settings({k: getattr(inp, k) for k in STRIP_OPTIONS}),
        }
        self._in_memory = (result, volume)
        return runtime


class _SynthStripRPTInputSpec(_SynthStripInputSpec, ReportletInputSpec):
    pass


class _SynthStripRPTOutputSpec(_SynthStripOutputSpec, ReportletOutputSpec):
    pass


class SynthStripRPT(SynthStrip):
    """:class:`SynthStrip` that also draws the mask contour over the image (SVG), from the
    arrays in memory (the input is read once)."""

    input_spec = _SynthStripRPTInputSpec
    output_spec = _SynthStripRPTOutputSpec

    def _run_interface(self, runtime):
        runtime = super()._run_interface(runtime)
        from synthbids.reports.reportlets import plot_mask

        result, volume = self._in_memory
        out = Path(runtime.cwd) / self.inputs.out_report
        first = volume.frame(0)
        mask = result.mask if result.mask.ndim == 3 else result.mask[..., 0]
        plot_mask(
            loaded.in_memory(first, volume), loaded.in_memory(mask.astype('uint8'), volume), out
        )
        self._results['out_report'] = str(out)
        return runtime
