"""Workflow graphs, built but not run: structure, resources, crash folders, stable names."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthbids.bids.layout import collect_images
from synthbids.config import ExecutionSettings, ModelSettings, NipypeSettings, Settings
from synthbids.workflows.anatomical import init_anat_wf
from synthbids.workflows.base import init_single_subject_wf, init_synthbids_wf
from tests.app.conftest import write_dataset

MODELS = {}


@pytest.fixture(scope='module')
def subjects(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp('wf') / 'bids')
    for name in ('strip.pt', 'seg.h5', 'head.pt'):  # weights are only hashed, never read
        MODELS[name] = root.parent / name
        MODELS[name].write_bytes(name.encode())
    return collect_images(root)


def models(**kwargs):
    paths = {'strip_model': MODELS['strip.pt'], 'seg_model': MODELS['seg.h5']}
    return ModelSettings(**paths, head_model=MODELS['head.pt'], **kwargs)


def settings(tmp_path, run_uuid='RUN', gpu=False, omp_nthreads=1, low_mem=False, **options):
    execution = ExecutionSettings(
        bids_dir=tmp_path / 'bids',
        output_dir=tmp_path / 'out',
        analysis_level='participant',
        work_dir=tmp_path / 'work',
        run_uuid=run_uuid,
    )
    nipype = NipypeSettings(omp_nthreads=omp_nthreads, gpu=gpu, low_mem=low_mem)
    return Settings(execution=execution, models=models(**options), nipype=nipype)


def nodes_of(wf):
    """Nodes of the flattened graph (as Nipype runs it) by full name, without the top."""
    return {n.fullname.split('.', 1)[1]: n for n in wf._create_flat_graph().nodes()}


def test_one_workflow_per_participant_and_image(subjects, tmp_path):
    wf = init_synthbids_wf(subjects=subjects, settings=settings(tmp_path, omp_nthreads=3))
    assert wf.name == 'synthbids_wf' and wf.base_dir == str(tmp_path / 'work')
    names = nodes_of(wf)
    strips = sorted(k for k in names if k.endswith('skullstrip_wf.strip'))
    assert strips == [
        'single_subject_01_wf.anat_T1w_wf.skullstrip_wf.strip',
        'single_subject_01_wf.anat_T2w_wf.skullstrip_wf.strip',
        'single_subject_02_wf.anat_T1w_wf.skullstrip_wf.strip',
        'single_subject_02_wf.anat_T2w_wf.skullstrip_wf.strip',
        'single_subject_03_wf.anat_ses_1_T1w_wf.skullstrip_wf.strip',
        'single_subject_03_wf.anat_ses_1_T2w_wf.skullstrip_wf.strip',
    ]
    strip = names[strips[0]]
    assert strip.mem_gb == 2.5 and strip.n_procs == 3 and strip.inputs.num_threads == 3
    seg = names['single_subject_01_wf.anat_T1w_wf.segmentation_wf.seg']
    assert seg.mem_gb == 4.0 and seg.n_procs == 3 and seg.inputs.qc is True
    assert seg.inputs.low_memory is False
    head = names['single_subject_03_wf.anat_ses_1_T2w_wf.head_wf.head']
    assert head.mem_gb == 2.5 and head.n_procs == 3 and head.inputs.num_threads == 3
    assert head.inputs.model == str(MODELS['head.pt'])
    sinks = [n for k, n in names.items() if k.rsplit('.', 1)[-1].startswith('ds_')]
    # strip 3, seg 4 (with QC), tissues 4 (dseg, GM, WM, CSF), head 5 (labels, volumes,
    # meshes, two figures) per image
    assert len(sinks) == 6 * (3 + 4 + 4 + 5) and all(n.run_without_submitting for n in sinks)
    crash = {k.split('.')[0]: n.config['execution']['crashdump_dir'] for k, n in names.items()}
    assert crash['single_subject_03_wf'] == str(tmp_path / 'out/sub-03/log/RUN')


def test_node_names_and_hashes_do_not_depend_on_the_run(subjects, tmp_path):
    def build(run_uuid, gpu):
        wf = init_synthbids_wf(subjects=subjects, settings=settings(tmp_path, run_uuid, gpu))
        return nodes_of(wf)

    a, b = build('A', False), build('B', True)
    assert a.keys() == b.keys()
    key = 'single_subject_02_wf.anat_T2w_wf.skullstrip_wf.strip'
    assert b[key].inputs.use_gpu is True
    assert a[key].inputs.get_hashval()[1] == b[key].inputs.get_hashval()[1]


@pytest.mark.parametrize(
    ('options', 'present', 'absent'),
    [
        ({'segment': False}, {'ds_mask', 'ds_brain'}, {'seg', 'ds_dseg', 'ds_qc'}),
        ({'qc': False}, {'seg', 'ds_dseg', 'ds_volumes'}, {'ds_qc', 'ds_probseg'}),
        ({'posteriors': True}, {'ds_probseg', 'label_map'}, set()),
        ({'parc': True, 'robust': True}, {'ds_dseg'}, set()),
        (
            {},
            {'head', 'ds_head_dseg', 'ds_head_volumes', 'ds_head_meshes', 'ds_report_skull'},
            set(),
        ),
        ({'head': False}, {'seg', 'strip'}, {'head', 'ds_head_dseg', 'ds_head_meshes'}),
        ({'segment': False, 'head': False}, {'strip'}, {'seg', 'head'}),
    ],
)
def test_options_shape_the_graph(subjects, tmp_path, options, present, absent):
    image = subjects['01'][1]
    wf = init_anat_wf(
        image=image,
        output_dir=tmp_path,
        models=models(**options),
        segment=options.get('segment', True),
    )
    leaves = {k.rsplit('.', 1)[-1]: n for k, n in nodes_of(wf).items()}
    assert present <= leaves.keys() and not absent & leaves.keys()
    if 'head' in leaves:
        assert leaves['ds_head_dseg'].inputs.desc == 'head'
        assert leaves['ds_head_meshes'].inputs.source_file == image.relpath
        assert leaves['ds_report_skull'].inputs.datatype == 'figures'
    if options.get('parc'):
        assert leaves['ds_dseg'].inputs.desc == 'aparcaseg'
        assert leaves['seg'].mem_gb == 7.0 and leaves['seg'].inputs.robust


def test_4d_images_are_stripped_but_not_segmented(tmp_path):
    root = write_dataset(tmp_path / 'bids', images=('sub-01/pet/sub-01_trc-FDG_pet.nii.gz',))
    pet = root / 'sub-01/pet/sub-01_trc-FDG_pet.nii.gz'
    nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)).to_filename(pet)
    images = collect_images(root)['01']
    wf = init_single_subject_wf(subject='01', images=images, settings=settings(tmp_path))
    leaves = {k.rsplit('.', 1)[-1] for k in nodes_of(wf)}
    assert 'strip' in leaves and 'seg' not in leaves and 'head' not in leaves
    with pytest.raises(TypeError, match='segment_4d'):  # no knob: 4-D is never segmented
        init_single_subject_wf(
            subject='01', images=images, settings=settings(tmp_path), segment_4d=True
        )


def test_strip_model_must_be_resolved(subjects, tmp_path):
    with pytest.raises(ValueError, match='resolved weights file'):
        init_anat_wf(image=subjects['01'][0], output_dir=tmp_path, models=ModelSettings())
    unresolved = ModelSettings(strip_model=MODELS['strip.pt'], seg_model=MODELS['seg.h5'])
    with pytest.raises(ValueError, match='head_model must be a resolved weights file'):
        init_anat_wf(image=subjects['01'][0], output_dir=tmp_path, models=unresolved)


def test_pet_images_get_no_head_tissues(tmp_path):
    """Head tissues are for anatomical images: a 3-D PET image is stripped and segmented."""
    root = write_dataset(tmp_path / 'bids', images=('sub-01/pet/sub-01_trc-FDG_pet.nii.gz',))
    images = collect_images(root)['01']
    wf = init_single_subject_wf(subject='01', images=images, settings=settings(tmp_path))
    leaves = {k.rsplit('.', 1)[-1] for k in nodes_of(wf)}
    assert {'strip', 'seg'} <= leaves and 'head' not in leaves


def test_ct_images_are_segmented_as_ct(tmp_path):
    root = write_dataset(tmp_path / 'bids', images=('sub-01/ct/sub-01_ct.nii.gz',))
    (image,) = collect_images(root)['01']
    wf = init_anat_wf(image=image, output_dir=tmp_path, models=models())
    leaves = {k.rsplit('.', 1)[-1]: n for k, n in nodes_of(wf).items()}
    assert leaves['seg'].inputs.ct is True
    assert leaves['ds_mask'].inputs.source_file == 'sub-01/ct/sub-01_ct.nii.gz'


def test_low_mem_reaches_every_seg_node_and_the_scheduler(subjects, tmp_path):
    """``--low-mem``: each SynthSeg node keeps less and declares less to the scheduler, and
    nothing else changes (the other nodes, the node hashes)."""
    plain = nodes_of(init_synthbids_wf(subjects=subjects, settings=settings(tmp_path)))
    low = nodes_of(init_synthbids_wf(subjects=subjects, settings=settings(tmp_path, low_mem=True)))
    segs = [k for k in low if k.endswith('segmentation_wf.seg')]
    assert len(segs) == 6
    for name in segs:
        assert low[name].inputs.low_memory is True and plain[name].inputs.low_memory is False
        assert low[name].mem_gb == 3.0 and plain[name].mem_gb == 4.0
        hashes = [n[name].inputs.get_hashval(hash_method='timestamp')[1] for n in (plain, low)]
        assert hashes[0] == hashes[1]
    for name in set(low) - set(segs):
        assert low[name].mem_gb == plain[name].mem_gb
