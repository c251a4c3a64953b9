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

from .anatomical import init_anat_wf

#: Datatypes whose images get no head tissues (not anatomical images).
NO_HEAD_DATATYPES = ('pet',)


def init_synthbids_wf(
    *, subjects: dict[str, list[SourceImage]], settings: Settings, name: str = 'synthbids_wf'
) -> pe.Workflow:
    """All selected participants, side by side (independent sub-workflows)."""
    ex = settings.execution
    workflow = pe.Workflow(name=name, base_dir=str(ex.work_dir))
    for label, images in subjects.items():
        single_subject_wf = init_single_subject_wf(
            subject=label,
            images=images,
            settings=settings,
            name=f'single_subject_{safe_name(label)}_wf',
        )
        set_crash_dir(
            single_subject_wf, Path(ex.output_dir) / f'sub-{label}' / 'log' / ex.run_uuid
        )
        workflow.add_nodes([single_subject_wf])
    return workflow


def init_single_subject_wf(
    *,
    subject: str,
    images: list[SourceImage],
    settings: Settings,
    name: str = 'single_subject_wf',
) -> pe.Workflow:
    """Every selected image of one participant (all sessions).

    SynthSeg runs on 3-D images only: a 4-D series (dynamic PET) is skull-stripped frame by
    frame and not segmented. Head tissues are labelled on the 3-D anatomical images (every
    contrast, and CT), not on PET.
    """
    models, nipype = settings.models, settings.nipype
    workflow = pe.Workflow(name=name)
    for image in images:
        if image.subject != subject:
            raise ValueError(f'{image.relpath} does not belong to sub-{subject}')
        is_4d = _is_4d(image.path)
        anat_wf = init_anat_wf(
            image=image,
            output_dir=settings.execution.output_dir,
            models=models,
            segment=models.segment and not is_4d,
            head=models.head and not is_4d and image.datatype not in NO_HEAD_DATATYPES,
            omp_nthreads=nipype.omp_nthreads,
            use_gpu=nipype.gpu,
            name=f'anat_{safe_name(image.bids_name.removeprefix(f"sub-{subject}_"))}_wf',
        )
        anat_wf.inputs.inputnode.in_file = str(image.path)
        workflow.add_nodes([anat_wf])
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
