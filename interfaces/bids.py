"""Writing derivatives: a small ``DerivativesDataSink`` (and ``MeshesDataSink`` for meshes).

It names a file after the raw image it derives from (entities kept, ``space-``/``seg-``/
``label-``/``desc-`` and a suffix added; :mod:`synthbids.bids.naming`), copies it into the
derivatives dataset atomically and writes its JSON sidecar with ``Sources`` as BIDS URIs.
Sinks always run (they are cheap), so re-running with a finished work directory rewrites
deleted outputs instead of silently skipping them.

A file that cannot be written (a full or read-only output folder) should stop the whole run
with one line: every later output would fail the same way. Nipype turns every exception of an
interface, ``BaseException`` included, into a failed node with tracebacks, so the sink keeps
such an error (``output_error``) when ``defer_output_errors`` is set, and :class:`SinkNode`,
which runs it in the main process, raises :class:`~synthbids.core.errors.RunAborted` from
outside the interface.
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
from nipype.pipeline import engine as pe


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc='root of the derivatives dataset')
    source_file = traits.Str(
        mandatory=True, desc='raw image this file derives from, relative to the raw dataset'
    )
    in_file = File(exists=True, mandatory=True, desc='file to save')
    suffix = traits.Str(mandatory=True, desc='BIDS suffix of the derivative')
    desc = traits.Str(desc='desc- label')
    seg = traits.Str(desc='seg- label')
    label = traits.Str(desc='label- label')
    space = traits.Either(
        None,
        traits.Str,
        default='source',
        usedefault=True,
        desc="space- label; 'source' for the source image's own space, None for none",
    )
    entities = traits.Dict(
        traits.Str, traits.Str, desc='more entities: res, cohort; from, to, mode (transforms)'
    )
    datatype = traits.Str(desc="output folder ('figures' for reportlets); default: the source's")
    meta_dict = traits.Dict(desc='sidecar metadata known when the graph is built')
    model_meta = traits.Dict(desc='sidecar metadata from the node that made the file')
    sources = traits.List(
        traits.Str, desc='derivatives this file was made from (paths in this dataset)'
    )
    spatial_reference = traits.Bool(True, usedefault=True, desc='write SpatialReference')


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(desc='the saved file')
    out_meta = File(desc='its JSON sidecar')


class DerivativesDataSink(SimpleInterface):
    """Save one derivative (and its sidecar) under its BIDS name."""

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    _always_run = True

    #: Keep an OutputError in ``output_error`` instead of failing (set by :class:`SinkNode`,
    #: which raises it after the node ran).
    defer_output_errors = False

    def _run_interface(self, runtime):
        from synthbids.core.errors import OutputError

        self.output_error = None
        try:
            return self._save(runtime)
        except OutputError as err:
            if not self.defer_output_errors:
                raise
            self.output_error = err
        return runtime

    def _save(self, runtime):
        from synthbids.bids.files import copy_file, write_json
        from synthbids.bids.naming import (
            SourceImage,
            derivative_name,
            derivative_relpath,
            figure_relpath,
            split_extension,
        )

        source = SourceImage.from_relpath(self.inputs.source_file)
        _, ext = split_extension(Path(self.inputs.in_file).name)
        desc = self.inputs.desc or None
        datatype = self.inputs.datatype or None
        extra = dict(self.inputs.entities or {})
        if datatype == 'figures':
            if self.inputs.space not in ('source', None):
                extra['space'] = self.inputs.space
            desc = desc or (None if extra else self.inputs.suffix)
            rel = figure_relpath(source, desc, ext, extra)
        else:
            space = self.inputs.space
            name = derivative_name(
                source,
                suffix=self.inputs.suffix,
                extension=ext,
                desc=desc,
                seg=self.inputs.seg or None,
                label=self.inputs.label or None,
                space=True if space == 'source' else space,
                extra=extra,
            )
            rel = derivative_relpath(source, name, datatype)
        out_file = Path(self.inputs.base_directory) / rel
        copy_file(self.inputs.in_file, out_file)
        self._results['out_file'] = str(out_file)

        if datatype == 'figures' or ext not in ('.nii.gz', '.nii', '.tsv'):
            return runtime
        meta = {'Sources': [f'bids:raw:{source.relpath}']}
        meta['Sources'] += [f'bids::{s}' for s in self.inputs.sources or []]
        if self.inputs.spatial_reference and ext != '.tsv':
            meta['SpatialReference'] = f'bids:raw:{source.relpath}'
        meta.update(self.inputs.meta_dict or {})
        meta.update(self.inputs.model_meta or {})
        sidecar = out_file.with_name(out_file.name[: -len(ext)] + '.json')
        write_json(sidecar, meta)
        self._results['out_meta'] = str(sidecar)
        return runtime


class _MeshesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc='root of the derivatives dataset')
    source_file = traits.Str(
        mandatory=True, desc='raw image these meshes derive from, relative to the raw dataset'
    )
    in_files = traits.List(
        File(exists=True),
        mandatory=True,
        desc="meshes named '<surface>.<extension>' (the surface becomes the BIDS suffix)",
    )
    desc = traits.Str(mandatory=True, desc='desc- label')


class _MeshesDataSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File, desc='the saved files')


class MeshesDataSink(DerivativesDataSink):
    """Save surface meshes of one image under their BIDS-like names (the surface as suffix, as
    BIDS names cortical surfaces: ``<source entities>_desc-<desc>_<surface>.surf.gii``, and
    the same name ``.stl``), without sidecars: their provenance is that of the labels they
    were built from. A surface may be missing (no voxels for it): only what exists is saved."""

    input_spec = _MeshesDataSinkInputSpec
    output_spec = _MeshesDataSinkOutputSpec

    def _save(self, runtime):
        from synthbids.bids.files import copy_file
        from synthbids.bids.naming import (
            SourceImage,
            derivative_name,
            derivative_relpath,
        )

        source = SourceImage.from_relpath(self.inputs.source_file)
        out_files = []
        for in_file in self.inputs.in_files:
            surface, dot, ext = Path(in_file).name.partition('.')
            name = derivative_name(
                source, suffix=surface, extension=dot + ext, desc=self.inputs.desc
            )
            out_file = Path(self.inputs.base_directory) / derivative_relpath(source, name)
            copy_file(in_file, out_file)
            out_files.append(str(out_file))
        self._results['out_files'] = out_files
        return runtime


class SinkNode(pe.Node):
    """A node that runs a :class:`DerivativesDataSink` in the main process and stops the whole
    run (:class:`~synthbids.core.errors.RunAborted`, carrying the one-line OutputError) when
    the output folder cannot be written."""

    def __init__(self, interface: DerivativesDataSink, name: str, **kwargs):
        interface.defer_output_errors = True
        super().__init__(interface, name=name, run_without_submitting=True, **kwargs)

    def run(self, updatehash=False):
        from synthbids.core.errors import RunAborted

        result = super().run(updatehash=updatehash)
        error = getattr(self._interface, 'output_error', None)
        if error is not None:
            self._interface.output_error = None
            raise RunAborted(error)
        return result
