"""The top of the graph: one workflow per participant, one ``anat_wf`` per image.

Node names depend only on the images and settings (never on the run), so re-running with
the same work directory finds every finished node; crash files of a participant go to
``<output_dir>/sub-<label>/log/<run_uuid>/``.
"""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from synthbids.bids.naming import SourceImage, safe_name
from synthbids.config import Settings

from .anatomical import (
    by_template,
    init_anat_wf,
    init_template_tissues_node,
    template_key,
    template_wf_name,
)

#: Datatypes whose images get no head tissues (not anatomical images).
NO_HEAD_DATATYPES = ('pet',)
#: Which images of a session are registered to the output spaces: all images of the first of
#: these contrasts the session has (fMRIPrep's T1w reference; else the next best anatomy).
SPACE_REFERENCE_ORDER = ('T1w', 'T2w', 'FLAIR', 'PDw', 'T2starw', 'CT', 'MPRAGE', 'UNIT1')


def init_synthbids_wf(
    *, subjects: dict[str, list[SourceImage]], settings: Settings, name: str = 'synthbids_wf'
) -> pe.Workflow:
    """All selected participants, side by side (independent sub-workflows)."""
    ex = settings.execution
    workflow = pe.Workflow(name=name, base_dir=str(ex.work_dir))
    templates = output_templates(settings)
    template_nodes = {
        template_key(group[0].space): init_template_tissues_node(
            templates=group,
            models=settings.models,
            omp_nthreads=settings.nipype.omp_nthreads,
            use_gpu=settings.nipype.gpu,
        )
        for group in by_template(templates)
    }
    for label, images in subjects.items():
        single_subject_wf = init_single_subject_wf(
            subject=label,
            images=images,
            settings=settings,
            templates=templates,
            name=f'single_subject_{safe_name(label)}_wf',
        )
        set_crash_dir(
            single_subject_wf, Path(ex.output_dir) / f'sub-{label}' / 'log' / ex.run_uuid
        )
        workflow.add_nodes([single_subject_wf])
        for anat_wf_name in getattr(single_subject_wf, 'registered', []):
            for key, node in template_nodes.items():
                space = next(t.space for t in templates if template_key(t.space) == key)
                target = f'{anat_wf_name}.{template_wf_name(space)}.inputnode.template_probseg'
                workflow.connect(node, 'out_tissue_probseg', single_subject_wf, target)
    return workflow


def output_templates(settings: Settings) -> list:
    """The template files of the requested ``--output-spaces`` (resolved at start-up)."""
    spaces = getattr(settings.execution, 'output_spaces', None) or ()
    if not spaces:
        return []
    from synthbids.bids.templates import resolve_template

    return [resolve_template(space) for space in spaces]


def space_references(images: list[SourceImage]) -> set[str]:
    """Relative paths of the images registered to the output spaces: per session, those of
    the first contrast of :data:`SPACE_REFERENCE_ORDER` present (all its runs)."""
    chosen: set[str] = set()
    sessions: dict[str | None, list[SourceImage]] = {}
    for image in images:
        sessions.setdefault(image.session, []).append(image)
    for members in sessions.values():
        suffixes = {i.suffix for i in members}
        first = next((s for s in SPACE_REFERENCE_ORDER if s in suffixes), None)
        chosen |= {i.relpath for i in members if i.suffix == first}
    return chosen


def init_single_subject_wf(
    *,
    subject: str,
    images: list[SourceImage],
    settings: Settings,
    templates: list | None = None,
    name: str = 'single_subject_wf',
) -> pe.Workflow:
    """Every selected image of one participant (all sessions).

    SynthSeg runs on 3-D images only: a 4-D series (dynamic PET) is skull-stripped frame by
    frame and not segmented. Head tissues are labelled on the 3-D anatomical images (every
    contrast, and CT), not on PET.
    """
    models, nipype = settings.models, settings.nipype
    workflow = pe.Workflow(name=name)
    references = space_references(images) if templates else set()
    workflow.registered = []  # anat_wf names with template registrations (init_synthbids_wf)
    for image in images:
        if image.subject != subject:
            raise ValueError(f'{image.relpath} does not belong to sub-{subject}')
        is_4d = _is_4d(image.path)
        segment = models.segment and not is_4d
        registered = segment and image.relpath in references
        anat_wf = init_anat_wf(
            image=image,
            output_dir=settings.execution.output_dir,
            models=models,
            segment=segment,
            head=models.head and not is_4d and image.datatype not in NO_HEAD_DATATYPES,
            templates=templates if registered else None,
            omp_nthreads=nipype.omp_nthreads,
            use_gpu=nipype.gpu,
            low_mem=nipype.low_mem,
            name=f'anat_{safe_name(image.bids_name.removeprefix(f"sub-{subject}_"))}_wf',
        )
        anat_wf.inputs.inputnode.in_file = str(image.path)
        workflow.add_nodes([anat_wf])
        if registered:
            workflow.registered.append(anat_wf.name)
    return workflow


def set_crash_dir(workflow: pe.Workflow, crash_dir: Path) -> None:
    """Send crash files of every node of ``workflow`` to ``crash_dir`` (text format).

    Node configuration is not part of the node hash, so this never invalidates results.
    """
    for node in workflow._get_all_nodes():
        config = dict(node.config or {})
        execution = dict(config.get('execution', {}))
        execution.update({'crashdump_dir': str(crash_dir), 'crashfile_format': 'txt'})
        config['execution'] = execution
        node.config = config


def _is_4d(path: Path) -> bool:
    import nibabel as nib

    try:
        shape = nib.load(str(path)).shape
    except Exception:  # unreadable: let the node report it with the file name
        return False
    return len(shape) > 3 and any(s > 1 for s in shape[3:])
