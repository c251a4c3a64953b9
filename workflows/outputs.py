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
