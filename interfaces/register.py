"""Nipype interfaces for template spaces: register an image to a template through its tissue
probabilities (:mod:`synthbids.core.register`), and resample its derivatives into the
template's space with the transform file that was written (so what users get is what was
tested). ``num_threads`` and ``use_gpu`` are ``nohash``.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from .reports import ReportletInputSpec, ReportletOutputSpec


class _ComputeInputSpec(BaseInterfaceInputSpec):
    tissue_probseg = InputMultiObject(
        File(exists=True), mandatory=True, desc='GM, WM, CSF probabilities of the image'
    )
    template_probseg = InputMultiObject(
        File(exists=True), mandatory=True, desc="the template's GM, WM, CSF probsegs"
    )
    source_label = traits.Str('T1w', usedefault=True, desc='from- label of the image space')
    template = traits.Str(mandatory=True, desc='to- label: the template (TemplateFlow name)')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='torch threads')
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc='register on the GPU')


class _ComputeOutputSpec(TraitedSpec):
    out_forward = File(exists=True, desc='image to template (ITK composite, ANTs .h5)')
    out_inverse = File(exists=True, desc='template to image (ITK composite, ANTs .h5)')


class TemplateRegistration(SimpleInterface):
    """Affine + diffeomorphic registration of tissue probabilities to a template's."""

    input_spec = _ComputeInputSpec
    output_spec = _ComputeOutputSpec

    def _run_interface(self, runtime):
        import logging
        import time

        from synthbids.core import register, register_apply
        from synthbids.core.xfm_itk import write_itk_h5

        from . import loaded

        inp = self.inputs
        if len(inp.tissue_probseg) != 3 or len(inp.template_probseg) != 3:
            raise ValueError('registration needs exactly three (GM, WM, CSF) probsegs each')
        loaded.set_threads(inp.num_threads)
        moving, moving_affine = _stack(inp.tissue_probseg)
        fixed, fixed_affine = _stack(inp.template_probseg)
        start = time.perf_counter()
        reg = register.register(
            moving, moving_affine, fixed, fixed_affine, device=loaded.device(inp.use_gpu)
        )
        cwd = Path(runtime.cwd)
        names = {'from': inp.source_label, 'to': inp.template}
        forward = cwd / f'from-{names["from"]}_to-{names["to"]}_mode-image_xfm.h5'
        inverse = cwd / f'from-{names["to"]}_to-{names["from"]}_mode-image_xfm.h5'
        write_itk_h5(forward, register_apply.forward_steps(reg))
        write_itk_h5(inverse, register_apply.inverse_steps(reg))
        self._results['out_forward'] = str(forward)
        self._results['out_inverse'] = str(inverse)
        losses = ', '.join(f'{k} {v:.5f}' for k, v in reg.metrics.items())
        logging.getLogger('synthbids').info(
            'registered to %s in %.1f s (%s)', inp.template, time.perf_counter() - start, losses
        )
        return runtime


def _stack(files) -> tuple:
    """(X, Y, Z, n) float32 of ``n`` 3-D probability images on one grid, and its affine."""
    import nibabel as nib
    import numpy as np

    images = [nib.load(str(f)) for f in files]
    for img in images[1:]:
        if img.shape[:3] != images[0].shape[:3] or not np.allclose(
            img.affine, images[0].affine, atol=1e-4
        ):
            raise ValueError(f'{img.get_filename()}: not on the grid of {files[0]}')
    data = np.stack([np.asarray(img.dataobj, dtype=np.float32) for img in images], axis=-1)
    return data, images[0].affine


class _ApplyInputSpec(BaseInterfaceInputSpec, ReportletInputSpec):
    in_file = File(exists=True, mandatory=True, desc='the image (shown in the report)')
    transform = File(exists=True, mandatory=True, desc='image-to-template .h5 (forward)')
    mask = File(exists=True, mandatory=True, desc='brain mask of the image')
    tissue_probseg = InputMultiObject(
        File(exists=True), mandatory=True, desc='GM, WM, CSF probabilities of the image'
    )
    reference = File(exists=True, mandatory=True, desc='template image: the output grid')
    template_mask = File(exists=True, mandatory=True, desc="template's brain mask (report)")
    template_probseg = InputMultiObject(
        File(exists=True), mandatory=True, desc="template's GM, WM, CSF maps (report)"
    )
    title = traits.Str(desc='report title')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='torch threads')


class _ApplyOutputSpec(ReportletOutputSpec):
    out_mask = File(exists=True, desc='brain mask in template space (uint8)')
    out_dseg = File(exists=True, desc='1 GM, 2 WM, 3 CSF in template space (uint8)')
    out_probseg = traits.List(File(exists=True), desc='GM, WM, CSF in template space')
    resolution = traits.Str(desc='voxel size of the template grid, for the sidecar')


class ApplyToTemplate(SimpleInterface):
    """Resample a mask and tissue maps into template space through a transform file, and
    draw the template's contours over the resampled image."""

    input_spec = _ApplyInputSpec
    output_spec = _ApplyOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from synthbids.core import register_apply
        from synthbids.core.tissues import TISSUE_NAMES, tissue_dseg
        from synthbids.core.xfm_itk import read_itk_h5
        from synthbids.reports.reportlets import plot_normalization

        from . import loaded

        inp = self.inputs
        loaded.set_threads(inp.num_threads)
        reg = register_apply.from_forward_steps(read_itk_h5(inp.transform))
        ref = nib.load(inp.reference)
        shape, affine = ref.shape[:3], ref.affine
        probs, probs_affine = _stack(inp.tissue_probseg)
        std_probs = register_apply.to_template(probs, probs_affine, reg, shape, affine)
        std_probs = np.clip(std_probs, 0, 1)
        mask_img = nib.load(inp.mask)
        mask = np.asarray(mask_img.dataobj, dtype=np.float32)
        std_mask = register_apply.to_template(mask, mask_img.affine, reg, shape, affine) >= 0.5
        image = nib.load(inp.in_file)
        data = np.asarray(image.dataobj, dtype=np.float32)
        data = data[..., 0] if data.ndim > 3 else data
        std_image = register_apply.to_template(data, image.affine, reg, shape, affine)

        cwd = Path(runtime.cwd)

        def save(array, name, dtype):
            path = cwd / name
            nib.save(_in_template_space(array.astype(dtype), affine), path)
            return str(path)

        self._results['out_mask'] = save(std_mask, 'std_mask.nii.gz', np.uint8)
        self._results['out_dseg'] = save(tissue_dseg(std_probs), 'std_dseg.nii.gz', np.uint8)
        self._results['out_probseg'] = [
            save(std_probs[..., c], f'std_label-{n}_probseg.nii.gz', np.float32)
            for c, n in enumerate(TISSUE_NAMES)
        ]
        zooms = ref.header.get_zooms()[:3]
        self._results['resolution'] = 'x'.join(f'{z:g}' for z in zooms) + ' mm'
        shown = _in_template_space(std_image, affine)
        out = cwd / inp.out_report
        wm = inp.template_probseg[1]  # the template's WM, as the segmentation network sees it
        plot_normalization(shown, inp.template_mask, wm, out, title=inp.title or None)
        self._results['out_report'] = str(out)
        return runtime


def _in_template_space(data, affine):
    """A NIfTI image with sform/qform code 4 (standard template space, as niworkflows'
    ``check_hdr`` sets for template-space derivatives) and units of mm."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=4)
    img.set_qform(affine, code=4)
    img.header.set_xyzt_units('mm')
    return img
