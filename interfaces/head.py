"""Nipype interfaces over the head-tissue core (:func:`synthbids.core.head.head_file`).

One node labels the head tissues of one image (background, brain, CSF, bone, skin, eyes,
other soft tissue: :data:`synthbids.core.labels.HEAD_CLASSES`) and writes what the
derivatives need: the labels on the input grid, the per-class volumes (one-row TSV, mL) and
the closed surface meshes (:mod:`synthbids.core.head_meshes`: GIfTI and STL of each surface).
Files are written by the same entry point as ``synthbids-head``'s, all or nothing. The model
is loaded on first use and kept per worker (:mod:`.loaded`); ``use_gpu``, ``num_threads`` and
``model_sha256`` are ``nohash``.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import File, SimpleInterface, TraitedSpec, traits

from . import loaded
from .loaded import NetworkInputSpec
from .reports import ReportletInputSpec, ReportletOutputSpec

#: Folder (in the node's folder) of the meshes, named ``<surface>.<surf.gii|stl>``.
MESH_FOLDER = 'meshes'
#: Colour of the rendered skull (ivory, shaded).
BONE_COLOR = '#efe6d2'


def volume_columns(classes) -> list[str]:
    """Column names of the head volume table: the non-background classes, spaces as ``_``
    (``brain``, ``csf``, ``bone``, ``skin``, ``eyes``, ``other_soft_tissue``)."""
    return [c.replace(' ', '_') for c in classes if c != 'background']


class _HeadTissuesInputSpec(NetworkInputSpec):
    in_file = File(exists=True, mandatory=True, desc='image to label (3-D, any contrast)')
    model = File(exists=True, mandatory=True, desc='head-tissue weights file')


class _HeadTissuesOutputSpec(TraitedSpec):
    out_dseg = File(exists=True, desc='head-tissue labels (int32) on the input grid')
    out_volumes = File(exists=True, desc='volume of each class, mL (TSV, one row)')
    out_meshes = traits.List(
        File(exists=True), desc='surface meshes: GIfTI and STL of each surface, outermost first'
    )
    model_meta = traits.Dict(desc='ModelName and ModelWeights (name, SHA-256, origin)')


class HeadTissues(SimpleInterface):
    """Label the head tissues of one image; write labels, volumes and surface meshes."""

    input_spec = _HeadTissuesInputSpec
    output_spec = _HeadTissuesOutputSpec

    def _run_interface(self, runtime):
        from synthbids.core.head import head_file, load_head_model
        from synthbids.core.imageio import load_volume
        from synthbids.core.weights import model_name

        inp = self.inputs
        # the BIDS App reported a qform/sform mismatch once already, when it checked the input
        image = load_volume(inp.in_file, max_dims=3, warn_xforms=False)
        loaded.set_threads(inp.num_threads)
        dev = loaded.device(inp.use_gpu)
        key = ('head', loaded.weights_key(inp.model), str(dev))
        sha = inp.model_sha256 or None
        model = loaded.loaded_model(
            key, lambda: load_head_model(inp.model, device=dev, warn=False, sha256=sha)
        )
        cwd = Path(runtime.cwd)
        dseg = cwd / loaded.output_name(inp.in_file, '_desc-head_dseg')
        mesh_dir = cwd / MESH_FOLDER
        for old in mesh_dir.glob('*') if mesh_dir.is_dir() else ():  # a rerun in this folder
            old.unlink()
        result, volume = head_file(image, model, dseg, mesh_dir=mesh_dir)
        self._results['out_dseg'] = str(dseg)
        self._results['out_volumes'] = str(write_head_volumes(cwd / 'volumes.tsv', result))
        self._results['out_meshes'] = [str(p) for p in mesh_files(mesh_dir)]
        self._results['model_meta'] = {
            'ModelName': model_name('head', model.weights),
            'ModelWeights': [model.weights.describe()],
        }
        self._in_memory = (result, volume)
        return runtime


def mesh_files(mesh_dir: Path) -> list[Path]:
    """The meshes written in ``mesh_dir``, outermost surface first, GIfTI before STL (a
    surface without voxels has no files)."""
    from synthbids.core.head_meshes import MESH_EXTENSIONS, SURFACES

    out = []
    for surface in SURFACES:
        for ext in MESH_EXTENSIONS:
            path = Path(mesh_dir) / f'{surface}.{ext}'
            if path.is_file():
                out.append(path)
    return out


def write_head_volumes(path: Path, result) -> Path:
    """One-row TSV of the per-class volumes in mL (:func:`synthbids.core.head.volumes_row`)."""
    from synthbids.bids.files import write_tsv
    from synthbids.core.head import volumes_row

    row = volumes_row(result)
    columns = volume_columns(result.classes)
    return write_tsv(path, columns, [{c.replace(' ', '_'): v for c, v in row.items()}])


class _HeadTissuesRPTInputSpec(_HeadTissuesInputSpec, ReportletInputSpec):
    out_render = traits.Str(
        'skull.png', usedefault=True, desc='file name of the rendered skull surface (PNG)'
    )


class _HeadTissuesRPTOutputSpec(_HeadTissuesOutputSpec, ReportletOutputSpec):
    out_render = File(exists=True, desc='rendered outer skull surface, two views (PNG)')


class HeadTissuesRPT(HeadTissues):
    """:class:`HeadTissues` that also draws the labels over the image (SVG mosaic, from the
    arrays in memory) and renders the outer skull surface (PNG, two views)."""

    input_spec = _HeadTissuesRPTInputSpec
    output_spec = _HeadTissuesRPTOutputSpec

    def _run_interface(self, runtime):
        runtime = super()._run_interface(runtime)
        import nibabel as nib

        from synthbids.core import labels as L
        from synthbids.reports.reportlets import plot_segmentation
        from synthbids.reports.surfaces import plot_message, plot_surface

        result, volume = self._in_memory
        cwd = Path(runtime.cwd)
        out = cwd / self.inputs.out_report
        plot_segmentation(
            loaded.in_memory(volume.frame(0), volume),
            nib.Nifti1Image(result.labels, result.affine),
            out,
            dict(enumerate(L.HEAD_COLORS)),
            names=dict(enumerate(L.HEAD_NAMES)),
        )
        self._results['out_report'] = str(out)
        skull = cwd / MESH_FOLDER / 'outerskull.surf.gii'
        render = cwd / self.inputs.out_render
        if skull.is_file():
            plot_surface(skull, render, color=BONE_COLOR)
        else:
            plot_message('No outer skull surface: no brain, CSF or bone was labelled', render)
        self._results['out_render'] = str(render)
        return runtime
