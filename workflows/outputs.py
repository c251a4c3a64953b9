"""Writing derivatives and reportlets: one datasink per output, names decided here.

Naming (see ``docs/outputs.md``): derivatives keep the source image's entities, add
``space-<suffix>`` for non-T1w images, ``desc-brain`` for the brain mask and brain image,
``desc-aseg`` / ``desc-aparcaseg`` for segmentations and the tables measured on them, and
``desc-head`` for the head-tissue labels, their volumes and their surface meshes.
Datasinks run in the main process (``run_without_submitting``): they only copy files, and
an output folder that cannot be written stops the run (``synthbids.interfaces.bids.SinkNode``).
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from synthbids.bids.naming import SourceImage, derivative_name, derivative_relpath
from synthbids.config import QC_THRESHOLD, ModelSettings

from ..interfaces.bids import DerivativesDataSink, MeshesDataSink, SinkNode

VOLUMES_DICTIONARY = {
    'index': {
        'Description': 'Label value of the structure in the dseg image '
        '(n/a for the total intracranial volume)'
    },
    'name': {'Description': 'Structure name, as in the volume tables of mri_synthseg'},
    'volume': {
        'Description': 'Volume of the structure, from the soft segmentation (posteriors)',
        'Units': 'mm^3',
    },
}

QC_DICTIONARY = {
    'structure': {'Description': 'Group of structures scored by the SynthSeg QC network'},
    'score': {'Description': 'Predicted segmentation quality, roughly a Dice score (1: best)'},
    'flag': {
        'Description': 'Whether the score reaches the threshold recommended by SynthSeg',
        'Levels': {
            'pass': f'score >= {QC_THRESHOLD}',
            'fail': f'score < {QC_THRESHOLD}: inspect this structure',
        },
    },
    'Threshold': QC_THRESHOLD,
}


#: Columns of the head volume table (``interfaces.head.volume_columns``), described.
HEAD_VOLUMES_DICTIONARY = {
    'brain': {'Description': 'Volume of the brain (head-tissue class brain)', 'Units': 'mL'},
    'csf': {
        'Description': 'Volume of the cerebrospinal fluid, ventricles included',
        'Units': 'mL',
    },
    'bone': {'Description': 'Volume of the skull and other bone', 'Units': 'mL'},
    'skin': {'Description': 'Volume of the skin (scalp)', 'Units': 'mL'},
    'eyes': {'Description': 'Volume of the eyes', 'Units': 'mL'},
    'other_soft_tissue': {
        'Description': 'Volume of the other soft tissue (muscle, fat, vessels, ...)',
        'Units': 'mL',
    },
    'Method': 'Sums of the class probabilities (soft segmentation) on the input grid',
}

#: Inputs of :func:`init_ds_skullstrip_wf` and :func:`init_ds_segmentation_wf`: the outputs of
#: the SynthStrip and SynthSeg nodes they save.
SKULLSTRIP_INPUTS = ('out_mask', 'out_brain', 'out_report', 'model_meta')
SEGMENTATION_FILES = ('out_dseg', 'out_volumes', 'out_qc', 'out_probseg')
SEGMENTATION_INPUTS = (*SEGMENTATION_FILES, 'label_map', 'out_report', 'model_meta')
HEAD_INPUTS = ('out_dseg', 'out_volumes', 'out_meshes', 'out_report', 'out_render', 'model_meta')
#: ``desc-`` of the head-tissue outputs and of the skull rendering.
HEAD_DESC = 'head'
SKULL_FIGURE_DESC = 'skull'


def _sink(image: SourceImage, output_dir: Path, name: str, **inputs) -> pe.Node:
    return SinkNode(
        DerivativesDataSink(base_directory=str(output_dir), source_file=image.relpath, **inputs),
        name=name,
    )


def _save(workflow, inputnode, field, sink, output=None, *, meta=True) -> None:
    """Connect ``inputnode.<field>`` (and the model metadata, with ``meta``) to ``sink``, and
    the path it saves to the workflow's ``outputnode.<output>``."""
    inputs = [(field, 'in_file')] + ([('model_meta', 'model_meta')] if meta else [])
    workflow.connect([(inputnode, sink, inputs)])
    if output:
        workflow.connect([(sink, workflow.get_node('outputnode'), [('out_file', output)])])


def _outputnode(workflow: pe.Workflow, fields: list[str]) -> None:
    workflow.add_nodes([pe.Node(niu.IdentityInterface(fields=fields), name='outputnode')])


def init_ds_skullstrip_wf(
    *, image: SourceImage, output_dir: Path, name: str = 'ds_skullstrip_wf'
) -> pe.Workflow:
    """Save the brain mask, the brain image and the mask reportlet of ``image``.

    Inputs: ``out_mask``, ``out_brain``, ``out_report``, ``model_meta``.
    Outputs: ``mask``, ``brain`` (paths in the derivatives dataset).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(SKULLSTRIP_INPUTS)), name='inputnode')
    _outputnode(workflow, ['mask', 'brain'])
    mask_rel = derivative_relpath(
        image, derivative_name(image, suffix='mask', extension='.nii.gz', desc='brain')
    )
    ds_mask = _sink(
        image, output_dir, 'ds_mask', suffix='mask', desc='brain', meta_dict={'Type': 'Brain'}
    )
    ds_brain = _sink(
        image,
        output_dir,
        'ds_brain',
        suffix=image.suffix,
        desc='brain',
        meta_dict={'SkullStripped': True},
        sources=[mask_rel],
    )
    ds_report = _sink(
        image,
        output_dir,
        'ds_report_mask',
        suffix=image.suffix,
        desc='brainmask',
        datatype='figures',
    )
    _save(workflow, inputnode, 'out_mask', ds_mask, 'mask')
    _save(workflow, inputnode, 'out_brain', ds_brain, 'brain')
    _save(workflow, inputnode, 'out_report', ds_report, meta=False)
    return workflow


def init_ds_segmentation_wf(
    *,
    image: SourceImage,
    output_dir: Path,
    models: ModelSettings,
    name: str = 'ds_segmentation_wf',
) -> pe.Workflow:
    """Save the segmentation, its tables, the posteriors and the reportlet of ``image``.

    Inputs: ``out_dseg``, ``out_volumes``, ``out_qc``, ``out_probseg``, ``label_map``,
    ``out_report``, ``model_meta``. Outputs: ``dseg``, ``volumes``, ``qc``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(SEGMENTATION_INPUTS)), name='inputnode')
    _outputnode(workflow, ['dseg', 'volumes', 'qc'])
    seg = models.seg_label
    ds_dseg = _sink(
        image, output_dir, 'ds_dseg', suffix='dseg', desc=seg, meta_dict={'Manual': False}
    )
    ds_volumes = _sink(
        image, output_dir, 'ds_volumes', suffix='volumes', desc=seg, meta_dict=VOLUMES_DICTIONARY
    )
    ds_report = _sink(
        image, output_dir, 'ds_report_seg', suffix=image.suffix, desc=seg, datatype='figures'
    )
    _save(workflow, inputnode, 'out_dseg', ds_dseg, 'dseg')
    _save(workflow, inputnode, 'out_volumes', ds_volumes, 'volumes')
    _save(workflow, inputnode, 'out_report', ds_report, meta=False)
    if models.qc:
        ds_qc = _sink(image, output_dir, 'ds_qc', suffix='qc', desc=seg, meta_dict=QC_DICTIONARY)
        _save(workflow, inputnode, 'out_qc', ds_qc, 'qc')
    if models.posteriors:
        ds_probseg = _sink(image, output_dir, 'ds_probseg', suffix='probseg', desc='aseg')
        label_map = pe.Node(
            niu.Function(
                function=_label_map_meta, input_names=['label_map'], output_names=['meta']
            ),
            name='label_map',
            run_without_submitting=True,
        )
        _save(workflow, inputnode, 'out_probseg', ds_probseg)
        # fmt: off
        workflow.connect([
            (inputnode, label_map, [('label_map', 'label_map')]),
            (label_map, ds_probseg, [('meta', 'meta_dict')]),
        ])
        # fmt: on
    return workflow


def init_ds_head_wf(
    *, image: SourceImage, output_dir: Path, name: str = 'ds_head_wf'
) -> pe.Workflow:
    """Save the head-tissue labels, their volumes, the surface meshes and the two reportlets
    of ``image``.

    Inputs: ``out_dseg``, ``out_volumes``, ``out_meshes``, ``out_report``, ``out_render``,
    ``model_meta``. Outputs: ``dseg``, ``volumes``, ``meshes`` (paths in the derivatives
    dataset).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(HEAD_INPUTS)), name='inputnode')
    _outputnode(workflow, ['dseg', 'volumes', 'meshes'])
    ds_dseg = _sink(
        image,
        output_dir,
        'ds_head_dseg',
        suffix='dseg',
        desc=HEAD_DESC,
        meta_dict={'Manual': False},
    )
    ds_volumes = _sink(
        image,
        output_dir,
        'ds_head_volumes',
        suffix='volumes',
        desc=HEAD_DESC,
        meta_dict=HEAD_VOLUMES_DICTIONARY,
    )
    ds_meshes = SinkNode(
        MeshesDataSink(base_directory=str(output_dir), source_file=image.relpath, desc=HEAD_DESC),
        name='ds_head_meshes',
    )
    ds_report = _sink(
        image,
        output_dir,
        'ds_report_head',
        suffix=image.suffix,
        desc=HEAD_DESC,
        datatype='figures',
    )
    ds_render = _sink(
        image,
        output_dir,
        'ds_report_skull',
        suffix=image.suffix,
        desc=SKULL_FIGURE_DESC,
        datatype='figures',
    )
    _save(workflow, inputnode, 'out_dseg', ds_dseg, 'dseg')
    _save(workflow, inputnode, 'out_volumes', ds_volumes, 'volumes')
    _save(workflow, inputnode, 'out_report', ds_report, meta=False)
    _save(workflow, inputnode, 'out_render', ds_render, meta=False)
    # fmt: off
    workflow.connect([
        (inputnode, ds_meshes, [('out_meshes', 'in_files')]),
        (ds_meshes, workflow.get_node('outputnode'), [('out_files', 'meshes')]),
    ])
    # fmt: on
    return workflow


def _label_map_meta(label_map):
    """Sidecar entry giving the frame order of a 4-D probseg (required by BIDS)."""
    return {'LabelMap': list(label_map)}


#: Sidecar of the 3-class tissue maps: how they were made, and the labels of the dseg.
TISSUE_META = {
    'Manual': False,
    'Description': 'Sums of the SynthSeg posteriors per tissue: GM = cerebral and cerebellar '
    'cortex, hippocampus, amygdala and deep grey nuclei; WM = cerebral and cerebellar white '
    'matter, brainstem, ventral diencephalon; CSF = ventricles and extracerebral CSF',
}
TISSUE_DSEG_META = {**TISSUE_META, 'Labels': {'0': 'BG', '1': 'GM', '2': 'WM', '3': 'CSF'}}
TISSUE_INPUTS = ('out_tissue_dseg', 'out_tissue_probseg', 'model_meta')


def init_ds_tissues_wf(
    *, image: SourceImage, output_dir: Path, name: str = 'ds_tissues_wf'
) -> pe.Workflow:
    """Save the 3-class tissue dseg and the ``label-GM|WM|CSF`` probsegs of ``image``, under
    the names sMRIPrep and fMRIPrep collect as precomputed (no ``desc-``).

    Inputs: ``out_tissue_dseg``, ``out_tissue_probseg`` (GM, WM, CSF), ``model_meta``.
    Output: ``dseg`` (its path in the derivatives dataset).
    """
    from synthbids.core.tissues import TISSUE_NAMES

    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(TISSUE_INPUTS)), name='inputnode')
    _outputnode(workflow, ['dseg'])
    ds_dseg = _sink(image, output_dir, 'ds_tissue_dseg', suffix='dseg', meta_dict=TISSUE_DSEG_META)
    _save(workflow, inputnode, 'out_tissue_dseg', ds_dseg, 'dseg')
    for i, label in enumerate(TISSUE_NAMES):
        select = pe.Node(
            niu.Select(index=i), name=f'select_{label.lower()}', run_without_submitting=True
        )
        sink = _sink(
            image,
            output_dir,
            f'ds_tissue_{label.lower()}',
            suffix='probseg',
            label=label,
            meta_dict=TISSUE_META,
        )
        # fmt: off
        workflow.connect([
            (inputnode, select, [('out_tissue_probseg', 'inlist')]),
            (select, sink, [('out', 'in_file')]),
            (inputnode, sink, [('model_meta', 'model_meta')]),
        ])
        # fmt: on
    return workflow


def template_entities(space) -> dict:
    """Entities of a template-space output other than ``space``: ``cohort``, ``res``."""
    return {k: v for k, v in space.entities.items() if k != 'space' and v}


def transform_rel(image: SourceImage, template, forward: bool = True) -> str:
    """Path of the image-to-template (``forward``) or template-to-image transform."""
    ends = (image.suffix, template) if forward else (template, image.suffix)
    name = derivative_name(
        image,
        suffix='xfm',
        extension='.h5',
        space=None,
        extra={'from': ends[0], 'to': ends[1], 'mode': 'image'},
    )
    return derivative_relpath(image, name)


def init_ds_template_wf(
    *, image: SourceImage, output_dir: Path, templates: list, name: str = 'ds_template_wf'
) -> pe.Workflow:
    """Save the transforms to one template and, for each of its requested resolutions
    (``templates``: :class:`synthbids.bids.templates.TemplateFiles`), the brain mask, tissue
    dseg and probsegs in its space and the normalisation reportlet (of the first).

    Inputs: ``out_forward``, ``out_inverse``, and per space ``i``: ``out_mask_i``,
    ``out_dseg_i``, ``out_probseg_i`` (GM, WM, CSF), ``out_report_i``.
    """
    from synthbids.core.tissues import TISSUE_NAMES

    template = templates[0].space.name
    workflow = pe.Workflow(name=name)
    fields = ['out_forward', 'out_inverse']
    for i in range(len(templates)):
        fields += [f'out_mask_{i}', f'out_dseg_{i}', f'out_probseg_{i}', f'out_report_{i}']
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name='inputnode')
    _outputnode(workflow, ['forward', 'inverse'])
    for field, forward in (('out_forward', True), ('out_inverse', False)):
        ends = (image.suffix, template) if forward else (template, image.suffix)
        sink = _sink(
            image,
            output_dir,
            f'ds_{field[4:]}',
            suffix='xfm',
            space=None,
            entities={'from': ends[0], 'to': ends[1], 'mode': 'image'},
        )
        _save(workflow, inputnode, field, sink, field[4:], meta=False)
    forward_rel = transform_rel(image, template)
    for i, files in enumerate(templates):
        space = files.space
        extra = template_entities(space)
        meta = {'Resolution': files.resolution_text} if 'res' in extra else {}
        mask_rel = derivative_relpath(
            image, derivative_name(image, suffix='mask', extension='.nii.gz', desc='brain')
        )

        common = {
            'space': space.name,
            'entities': extra,
            'spatial_reference': False,
            'sources': [mask_rel, forward_rel],
        }

        def sink(kind, common=common, i=i, **inputs):
            return _sink(image, output_dir, f'ds_std{i}_{kind}', **common, **inputs)

        ds_mask = sink('mask', suffix='mask', desc='brain', meta_dict={'Type': 'Brain', **meta})
        ds_dseg = sink('dseg', suffix='dseg', meta_dict={**TISSUE_DSEG_META, **meta})
        _save(workflow, inputnode, f'out_mask_{i}', ds_mask, meta=False)
        _save(workflow, inputnode, f'out_dseg_{i}', ds_dseg, meta=False)
        for c, label in enumerate(TISSUE_NAMES):
            select = pe.Node(
                niu.Select(index=c),
                name=f'select_std{i}_{label.lower()}',
                run_without_submitting=True,
            )
            ds_prob = sink(
                label.lower(), suffix='probseg', label=label, meta_dict={**TISSUE_META, **meta}
            )
            # fmt: off
            workflow.connect([
                (inputnode, select, [(f'out_probseg_{i}', 'inlist')]),
                (select, ds_prob, [('out', 'in_file')]),
            ])
            # fmt: on
        if i == 0:
            ds_report = _sink(
                image,
                output_dir,
                'ds_report_std',
                suffix=image.suffix,
                space=space.name,
                datatype='figures',
            )
            _save(workflow, inputnode, f'out_report_{i}', ds_report, meta=False)
    return workflow
