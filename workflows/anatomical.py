"""Per-image processing: SynthStrip, SynthSeg and the head-tissue network on one image.

The three networks are independent (SynthSeg and the head network are trained on heads, not
brains), so they run side by side on the raw image and Nipype can schedule them in parallel.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from synthbids.bids.naming import SourceImage, safe_name
from synthbids.config import QC_THRESHOLD, ModelSettings

from ..interfaces.head import HeadTissuesRPT
from ..interfaces.register import ApplyToTemplate, TemplateRegistration
from ..interfaces.synthseg import SynthSeg, SynthSegRPT
from ..interfaces.synthstrip import SynthStripRPT
from .outputs import (
    init_ds_head_wf,
    init_ds_segmentation_wf,
    init_ds_skullstrip_wf,
    init_ds_template_wf,
    init_ds_tissues_wf,
)

#: Memory (GB) declared to the scheduler for one network run on a 1 mm head; MultiProc
#: would otherwise assume 0.25 GB and start too many at once (nipreps/mriqc#1437).
STRIP_MEM_GB = 2.5
SEG_MEM_GB = 4.0
#: What ``low_mem`` saves of it: the first level's skip features (0.7 GB for Colin27).
SEG_LOW_MEM_SAVED_GB = 1.0
#: Registration holds the tissue maps of the image and of the template and a few 2 mm grids;
#: resampling into a 1 mm template adds a few of its grids.
REGISTRATION_MEM_GB = 1.5
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
    'out_tissue_dseg',
    'out_tissue_probseg',
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
    low_mem: bool = False,
    name: str = 'segmentation_wf',
) -> pe.Workflow:
    """SynthSeg labels, volumes, QC scores (and posteriors) with a reportlet for one image;
    ``low_mem`` recomputes the network's full-resolution features instead of keeping them.

    Inputs: ``in_file``. Outputs: ``out_dseg``, ``out_volumes``, ``out_qc``, ``out_probseg``,
    ``label_map``, ``out_report``, ``model_meta``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=['in_file']), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=SEG_OUTPUTS), name='outputnode')
    seg = pe.Node(
        SynthSegRPT(
            **models.seg_inputs(ct),
            tissues=True,
            qc_threshold=QC_THRESHOLD,
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
            low_memory=low_mem,
            out_report='segmentation.svg',
        ),
        name='seg',
        mem_gb=SEG_MEM_GB
        - SEG_LOW_MEM_SAVED_GB * low_mem
        + 2.0 * models.robust
        + 1.0 * models.parc,
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
    templates: list | None = None,
    omp_nthreads: int = 1,
    use_gpu: bool = False,
    low_mem: bool = False,
    name: str = 'anat_wf',
) -> pe.Workflow:
    """Everything synthbids does to one image, outputs and reportlets included.

    ``head`` (default: ``models.head``) adds the head tissues. ``templates``: the
    :class:`synthbids.bids.templates.TemplateFiles` of the output spaces to register the image
    to (through the segmentation's tissue maps). Inputs: ``in_file`` (the raw
    image). Outputs: the derivative paths (``mask``, ``brain``, with segmentation ``dseg``,
    ``volumes``, ``qc``, and with head tissues ``head_dseg``, ``head_volumes``,
    ``head_meshes``). ``low_mem``: SynthSeg keeps less in memory (same results).
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
        models=models,
        ct=image.suffix == 'ct',
        omp_nthreads=omp_nthreads,
        use_gpu=use_gpu,
        low_mem=low_mem,
    )
    ds_segmentation_wf = init_ds_segmentation_wf(image=image, output_dir=output_dir, models=models)
    seg_fields = ['out_dseg', 'out_volumes', 'out_report', 'model_meta']
    ds_tissues_wf = init_ds_tissues_wf(image=image, output_dir=output_dir)
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
        (segmentation_wf, ds_tissues_wf, [
            (f'outputnode.{f}', f'inputnode.{f}')
            for f in ('out_tissue_dseg', 'out_tissue_probseg', 'model_meta')
        ]),
    ])
    # fmt: on
    for group in by_template(templates or []):
        template_wf = init_template_wf(
            image=image,
            output_dir=output_dir,
            templates=group,
            omp_nthreads=omp_nthreads,
            use_gpu=use_gpu,
            name=template_wf_name(group[0].space),
        )
        # fmt: off
        workflow.connect([
            (inputnode, template_wf, [('in_file', 'inputnode.in_file')]),
            (skullstrip_wf, template_wf, [('outputnode.out_mask', 'inputnode.mask')]),
            (segmentation_wf, template_wf, [
                ('outputnode.out_tissue_probseg', 'inputnode.tissue_probseg'),
            ]),
        ])
        # fmt: on
    return workflow


def init_template_tissues_node(
    *, templates: list, models: ModelSettings, omp_nthreads: int = 1, use_gpu: bool = False
) -> pe.Node:
    """GM/WM/CSF maps of a template's image (its finest requested resolution) by the run's
    own segmentation network: the registration target of every image (one node per run and
    template, so it is computed once). Output: ``out_tissue_probseg``."""
    finest = min(templates, key=lambda t: t.resolution)
    inputs = models.seg_inputs(False)
    inputs.update(qc=False, parc=False, posteriors=False)
    return pe.Node(
        SynthSeg(
            in_file=str(finest.image),
            **inputs,
            tissues=True,
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
        ),
        name=f'template_tissues_{safe_name(template_key(finest.space))}',
        mem_gb=SEG_MEM_GB,
        n_procs=omp_nthreads,
    )


def template_key(space) -> str:
    """One registration per template and cohort (resolutions share it)."""
    return space.name + (f'_cohort-{space.cohort}' if space.cohort else '')


def template_wf_name(space) -> str:
    return f'template_{safe_name(template_key(space))}_wf'


def by_template(templates: list) -> list[list]:
    """The requested template files grouped by template (and cohort), in request order:
    one registration per template, resampled to each of its requested resolutions."""
    groups: dict[str, list] = {}
    for files in templates:
        groups.setdefault(template_key(files.space), []).append(files)
    return list(groups.values())


def init_template_wf(
    *,
    image: SourceImage,
    output_dir: Path,
    templates: list,
    omp_nthreads: int = 1,
    use_gpu: bool = False,
    name: str = 'template_wf',
) -> pe.Workflow:
    """Register one image to one template (through its tissue probabilities) and write the
    transforms and, for each requested resolution, the brain mask and tissue maps in the
    template's space, with a normalisation reportlet.

    Inputs: ``in_file``, ``mask`` (brain mask), ``tissue_probseg`` (GM, WM, CSF), and
    ``template_probseg``: the same maps of the template, made by the same segmentation network
    from the template's image (:func:`init_template_tissues_node`), so that both sides define
    the tissues alike.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=['in_file', 'mask', 'tissue_probseg', 'template_probseg']),
        name='inputnode',
    )
    register = pe.Node(
        TemplateRegistration(
            template=templates[0].space.name,
            source_label=image.suffix,
            num_threads=omp_nthreads,
            use_gpu=use_gpu,
        ),
        name='register',
        mem_gb=REGISTRATION_MEM_GB,
        n_procs=omp_nthreads,
    )
    ds_template_wf = init_ds_template_wf(image=image, output_dir=output_dir, templates=templates)
    # fmt: off
    workflow.connect([
        (inputnode, register, [('tissue_probseg', 'tissue_probseg'),
                               ('template_probseg', 'template_probseg')]),
        (register, ds_template_wf, [('out_forward', 'inputnode.out_forward'),
                                    ('out_inverse', 'inputnode.out_inverse')]),
    ])
    # fmt: on
    for i, files in enumerate(templates):
        apply = pe.Node(
            ApplyToTemplate(
                reference=str(files.image),
                template_mask=str(files.mask),
                title=f'{image.bids_name} in {files.space.fullname}',
                num_threads=omp_nthreads,
            ),
            name=f'to_template_{i}',
            mem_gb=REGISTRATION_MEM_GB,
            n_procs=omp_nthreads,
        )
        # fmt: off
        workflow.connect([
            (inputnode, apply, [('in_file', 'in_file'), ('mask', 'mask'),
                                ('tissue_probseg', 'tissue_probseg'),
                                ('template_probseg', 'template_probseg')]),
            (register, apply, [('out_forward', 'transform')]),
            (apply, ds_template_wf, [('out_mask', f'inputnode.out_mask_{i}'),
                                     ('out_dseg', f'inputnode.out_dseg_{i}'),
                                     ('out_probseg', f'inputnode.out_probseg_{i}'),
                                     ('out_report', f'inputnode.out_report_{i}')]),
        ])
        # fmt: on
    return workflow
