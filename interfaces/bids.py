"""Writing derivatives: a small ``DerivativesDataSink``.

It names a file after the raw image it derives from (entities kept, ``space-``/``seg-``/
``label-``/``desc-`` and a suffix added; :mod:`synthbids.bids.naming`), copies it into the
derivatives dataset atomically and writes its JSON sidecar with ``Sources`` as BIDS URIs.
Sinks always run (they are cheap), so re-running with a finished work directory rewrites
deleted outputs instead of silently skipping them.
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

    def _run_interface(self, runtime):
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
        if datatype == 'figures':
            rel = figure_relpath(source, desc or self.inputs.suffix, ext)
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
