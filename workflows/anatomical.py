"""Per-image processing: SynthStrip, SynthSeg and the head-tissue network on one image.

The three networks are independent (SynthSeg and the head network are trained on heads, not
brains), so they run side by side on the raw image and Nipype can schedule them in parallel.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from synthbids.bids.naming import SourceImage
from synthbids.config import QC_THRESHOLD, ModelSettings

from ..interfaces.head import HeadTissuesRPT
from ..interfaces.synthseg import SynthSegRPT
from ..interfaces.synthstrip import SynthStripRPT
from .outputs import init_ds_head_wf, init_ds_segmentation_wf, init_ds_skullstrip_wf

#: Memory (GB) declared to the scheduler for one network run on a 1 mm head; MultiProc
#: would otherwise assume 0.25 GB and start too many at once (nipreps/mriqc#1437).
STRIP_MEM_GB = 2.5
SEG_MEM_GB = 4.0
#: The head network is small (2 mm grid), but its seven class probabilities are brought back
#: to the input grid and four surfaces are meshed there: 1.1 GB peak for Colin27 (1 mm,
#: 181x217x181, one thread), with room for larger grids.
HEAD_MEM_GB = 2.5

STRIP_OUTPUTS = ['out_mask', 'out_brain', 'out_report', 'model_meta']
SEG_OUTPUTS = [
    'out_dseg',
    'out_volumes',
    'out_qc',
    'out_probseg',
    'label_map',
    'out_report',
    'model_meta',
]
HEAD_OUTPUTS = ['out_dseg', 'out_volumes', 'out_meshes', 'out_report', 'out_render', 'model_meta']


def init_skullstrip_wf(
    *,
    models: ModelSettings,
    omp_nthreads: int = 1,
    use_gpu: bool = False,
    name: str = 'skullstrip_wf',
) -> pe.Workflow:
    """Brain mask, brain image and a mask reportlet for one image.

    Inputs: ``in_file``. Outputs: ``out_mask``, ``out_brain``, ``out_report``, ``model_meta``.
    """
    if models.strip_model is None:
        raise ValueError('models.strip_model must be a resolved weights file')
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=['in_file']), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=STRIP_OUTPUTS), name='outputnode')
    strip = pe.Node(
        SynthStripRPT(
            **models.strip_inputs(),
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
            out_report='brainmask.svg',
        ),
        name='strip',
        mem_gb=STRIP_MEM_GB,
        n_procs=omp_nthreads,
    )
    # fmt: off
    workflow.connect([
        (inputnode, strip, [('in_file', 'in_file')]),
        (strip, outputnode, [(f, f) for f in STRIP_OUTPUTS]),
    ])
    # fmt: on
    return workflow


def init_segmentation_wf(
    *,
    models: ModelSettings,
    ct: bool = False,
    omp_nthreads: int = 1,
    use_gpu: bool = False,
    name: str = 'segmentation_wf',
) -> pe.Workflow:
    """SynthSeg labels, volumes, QC scores (and posteriors) with a reportlet for one image.

    Inputs: ``in_file``. Outputs: ``out_dseg``, ``out_volumes``, ``out_qc``, ``out_probseg``,
    ``label_map``, ``out_report``, ``model_meta``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=['in_file']), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=SEG_OUTPUTS), name='outputnode')
    seg = pe.Node(
        SynthSegRPT(
            **models.seg_inputs(ct),
            qc_threshold=QC_THRESHOLD,
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
            out_report='segmentation.svg',
        ),
        name='seg',
        mem_gb=SEG_MEM_GB + 2.0 * models.robust + 1.0 * models.parc,
        n_procs=omp_nthreads,
    )
    connections = [(f, f) for f in SEG_OUTPUTS if f not in ('out_qc', 'out_probseg', 'label_map')]
    if models.qc:
        connections.append(('out_qc', 'out_qc'))
    if models.posteriors:
        connections += [('out_probseg', 'out_probseg'), ('label_map', 'label_map')]
    # fmt: off
    workflow.connect([
        (inputnode, seg, [('in_file', 'in_file')]),
        (seg, outputnode, connections),
    ])
    # fmt: on
    return workflow


def init_head_wf(
    *,
    models: ModelSettings,
    omp_nthreads: int = 1,
    use_gpu: bool = False,
    name: str = 'head_wf',
) -> pe.Workflow:
    """Head-tissue labels, their volumes and surface meshes, with two reportlets (labels over
    the image; the rendered outer skull surface) for one image.

    Inputs: ``in_file``. Outputs: ``out_dseg``, ``out_volumes``, ``out_meshes``,
    ``out_report``, ``out_render``, ``model_meta``.
    """
    if models.head_model is None:
        raise ValueError('models.head_model must be a resolved weights file')
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=['in_file']), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=HEAD_OUTPUTS), name='outputnode')
    head = pe.Node(
        HeadTissuesRPT(
            **models.head_inputs(),
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
            out_report='head.svg',
            out_render='skull.png',
        ),
        name='head',
        mem_gb=HEAD_MEM_GB,
        n_procs=omp_nthreads,
    )
    # fmt: off
    workflow.connect([
        (inputnode, head, [('in_file', 'in_file')]),
        (head, outputnode, [(f, f) for f in HEAD_OUTPUTS]),
    ])
    # fmt: on
    return workflow


def init_anat_wf(
    *,
    image: SourceImage,
    output_dir: Path,
    models: ModelSettings,
    segment: bool = True,
    head: bool | None = None,
    omp_nthreads: int = 1,
    use_gpu: bool = False,
    name: str = 'anat_wf',
) -> pe.Workflow:
    """Everything synthbids does to one image, outputs and reportlets included.

    ``head`` (default: ``models.head``) adds the head tissues. Inputs: ``in_file`` (the raw
    image). Outputs: the derivative paths (``mask``, ``brain``, with segmentation ``dseg``,
    ``volumes``, ``qc``, and with head tissues ``head_dseg``, ``head_volumes``,
    ``head_meshes``).
    """
    workflow = pe.Workflow(name=name)
    fields = ['mask', 'brain', 'dseg', 'volumes', 'qc', 'head_dseg', 'head_volumes', 'head_meshes']
    inputnode = pe.Node(niu.IdentityInterface(fields=['in_file']), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=fields), name='outputnode')

    skullstrip_wf = init_skullstrip_wf(models=models, omp_nthreads=omp_nthreads, use_gpu=use_gpu)
    ds_skullstrip_wf = init_ds_skullstrip_wf(image=image, output_dir=output_dir)
    # fmt: off
    workflow.connect([
        (inputnode, skullstrip_wf, [('in_file', 'inputnode.in_file')]),
        (skullstrip_wf, ds_skullstrip_wf, [
            (f'outputnode.{f}', f'inputnode.{f}') for f in STRIP_OUTPUTS
        ]),
        (ds_skullstrip_wf, outputnode, [('outputnode.mask', 'mask'),
                                        ('outputnode.brain', 'brain')]),
    ])
    # fmt: on
    if models.head if head is None else head:
        head_wf = init_head_wf(models=models, omp_nthreads=omp_nthreads, use_gpu=use_gpu)
        ds_head_wf = init_ds_head_wf(image=image, output_dir=output_dir)
        # fmt: off
        workflow.connect([
            (inputnode, head_wf, [('in_file', 'inputnode.in_file')]),
            (head_wf, ds_head_wf, [
                (f'outputnode.{f}', f'inputnode.{f}') for f in HEAD_OUTPUTS
            ]),
            (ds_head_wf, outputnode, [('outputnode.dseg', 'head_dseg'),
                                      ('outputnode.volumes', 'head_volumes'),
                                      ('outputnode.meshes', 'head_meshes')]),
        ])
        # fmt: on
    if not segment:
        return workflow

    segmentation_wf = init_segmentation_wf(
        models=models, ct=image.suffix == 'ct', omp_nthreads=omp_nthreads, use_gpu=use_gpu
    )
    ds_segmentation_wf = init_ds_segmentation_wf(image=image, output_dir=output_dir, models=models)
    seg_fields = ['out_dseg', 'out_volumes', 'out_report', 'model_meta']
    if models.qc:
        seg_fields.append('out_qc')
    if models.posteriors:
        seg_fields += ['out_probseg', 'label_map']
    # fmt: off
    workflow.connect([
        (inputnode, segmentation_wf, [('in_file', 'inputnode.in_file')]),
        (segmentation_wf, ds_segmentation_wf, [
            (f'outputnode.{f}', f'inputnode.{f}') for f in seg_fields
        ]),
        (ds_segmentation_wf, outputnode, [('outputnode.dseg', 'dseg'),
                                          ('outputnode.volumes', 'volumes'),
                                          ('outputnode.qc', 'qc')]),
    ])
    # fmt: on
    return workflow
