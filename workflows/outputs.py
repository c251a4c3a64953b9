"""Writing derivatives and reportlets: one datasink per output, names decided here.

Naming (see ``docs/outputs.md``): derivatives keep the source image's entities, add
``space-<suffix>`` for non-T1w images, ``desc-brain`` for the brain mask and brain image,
``desc-aseg`` / ``desc-aparcaseg`` for segmentations and the tables measured on them.
Datasinks run in the main process (``run_without_submitting``): they only copy files.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from synthbids.bids.naming import SourceImage, derivative_name, derivative_relpath
from synthbids.config import QC_THRESHOLD, ModelSettings

from ..interfaces.bids import DerivativesDataSink

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


def _sink(image: SourceImage, output_dir: Path, name: str, **inputs) -> pe.Node:
    return pe.Node(
        DerivativesDataSink(base_directory=str(output_dir), source_file=image.relpath, **inputs),
        name=name,
        run_without_submitting=True,
    )


def init_ds_skullstrip_wf(
    *, image: SourceImage, output_dir: Path, name: str = 'ds_skullstrip_wf'
) -> pe.Workflow:
    """Save the brain mask, the brain image and the mask reportlet of ``image``.

    Inputs: ``out_mask``, ``out_brain``, ``out_report``, ``model_meta``.
    Outputs: ``mask``, ``brain`` (paths in the derivatives dataset).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=['out_mask', 'out_brain', 'out_report', 'model_meta']),
        name='inputnode',
    )
    outputnode = pe.Node(niu.IdentityInterface(fields=['mask', 'brain']), name='outputnode')
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
    # fmt: off
    workflow.connect([
        (inputnode, ds_mask, [('out_mask', 'in_file'), ('model_meta', 'model_meta')]),
        (inputnode, ds_brain, [('out_brain', 'in_file'), ('model_meta', 'model_meta')]),
        (inputnode, ds_report, [('out_report', 'in_file')]),
        (ds_mask, outputnode, [('out_file', 'mask')]),
        (ds_brain, outputnode, [('out_file', 'brain')]),
    ])
    # fmt: on
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
    fields = [
        'out_dseg',
        'out_volumes',
        'out_qc',
        'out_probseg',
        'label_map',
        'out_report',
        'model_meta',
    ]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name='inputnode')
    outputnode = pe.Node(
        niu.IdentityInterface(fields=['dseg', 'volumes', 'qc']), name='outputnode'
    )
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
    # fmt: off
    workflow.connect([
        (inputnode, ds_dseg, [('out_dseg', 'in_file'), ('model_meta', 'model_meta')]),
        (inputnode, ds_volumes, [('out_volumes', 'in_file'), ('model_meta', 'model_meta')]),
        (inputnode, ds_report, [('out_report', 'in_file')]),
        (ds_dseg, outputnode, [('out_file', 'dseg')]),
        (ds_volumes, outputnode, [('out_file', 'volumes')]),
    ])
    # fmt: on
    if models.qc:
        ds_qc = _sink(image, output_dir, 'ds_qc', suffix='qc', desc=seg, meta_dict=QC_DICTIONARY)
        # fmt: off
        workflow.connect([
            (inputnode, ds_qc, [('out_qc', 'in_file'), ('model_meta', 'model_meta')]),
            (ds_qc, outputnode, [('out_file', 'qc')]),
        ])
        # fmt: on
    if models.posteriors:
        ds_probseg = _sink(image, output_dir, 'ds_probseg', suffix='probseg', desc='aseg')
        label_map = pe.Node(
            niu.Function(
                function=_label_map_meta, input_names=['label_map'], output_names=['meta']
            ),
            name='label_map',
            run_without_submitting=True,
        )
        # fmt: off
        workflow.connect([
            (inputnode, label_map, [('label_map', 'label_map')]),
            (inputnode, ds_probseg, [('out_probseg', 'in_file'), ('model_meta', 'model_meta')]),
            (label_map, ds_probseg, [('meta', 'meta_dict')]),
        ])
        # fmt: on
    return workflow


def _label_map_meta(label_map):
    """Sidecar entry giving the frame order of a 4-D probseg (required by BIDS)."""
    return {'LabelMap': list(label_map)}
