"""Dataset-level files of the derivatives: description, ``.bidsignore``, label tables, desc
labels. Written (atomically, identically) by every participant job and the group job."""

from __future__ import annotations

import os
from pathlib import Path

from .files import write_json, write_text, write_tsv

CODE_URL = 'https://github.com/synthbids/synthbids'
BIDS_VERSION = '1.10.0'

#: Files the BIDS schema does not describe (reports, logs, per-image tables, PET/CT extras,
#: head surface meshes: BIDS 1.10 has no rule for a ``.surf.gii`` of the head, nor for STL).
#: Each folder pattern is given in gitignore form (bids-validator) and in the fnmatch form
#: that bidsschematools applies to full paths.
BIDSIGNORE = (
    '*.html',
    'logs/',
    '*/logs/*',
    '*/figures/*',
    'viewer/',
    '*/viewer/*',
    '*/log/*',
    '*_volumes.tsv',
    '*_volumes.json',
    '*_qc.tsv',
    '*_qc.json',
    'group_*.tsv',
    'group_*.json',
    '*/pet/*_mask.*',
    '*/pet/*_dseg.*',
    '*/pet/*_probseg.*',
    '*/ct/*',
    '*_desc-head_*.surf.gii',
    '*_desc-head_*.stl',
    '*_xfm.*',
)

#: Every ``desc-`` label synthbids writes (BIDS 1.9 ``descriptions.tsv``). All are listed in
#: every run, so that participant jobs with and without ``--parc`` write the same file.
DESCRIPTIONS = {
    'brain': 'Brain extracted by SynthStrip: the brain mask (mask) or the input image with '
    'every voxel outside the mask set to the fill value (contrast suffixes).',
    'aseg': 'SynthSeg segmentation into 32 aseg-like structures (FreeSurfer label values and '
    'names; desc-aseg_dseg.tsv): the labels (dseg), the posteriors (probseg), the regional '
    'volumes (volumes) and the QC scores (qc) measured on them.',
    'aparcaseg': 'SynthSeg segmentation with the cortex parcellated into the 68 '
    'Desikan-Killiany regions (--parc; desc-aparcaseg_dseg.tsv): labels, volumes and QC '
    'scores.',
    'brainmask': 'Report figure: the brain-mask contour over the input image (figures/).',
    'head': 'Head tissues labelled by the synthbids head-tissue network (background, brain, '
    'CSF, bone, skin, eyes, other soft tissue; desc-head_dseg.tsv): the labels (dseg), the '
    'volume of each class (volumes) and the closed surface meshes built from the labels '
    '(scalp, outerskull, innerskull, brain: .surf.gii and .stl).',
    'skull': 'Report figure: the outer skull surface mesh, rendered from two sides (figures/).',
}


def dataset_description(
    version: str, bids_dir: Path, raw_description: dict, environ: dict | None = None
) -> dict:
    """The derivative ``dataset_description.json`` (GeneratedBy, SourceDatasets, links)."""
    environ = os.environ if environ is None else environ
    generated = {
        'Name': 'synthbids',
        'Version': version,
        'CodeURL': CODE_URL,
        'Description': 'Skull stripping (SynthStrip) and whole-brain segmentation (SynthSeg) '
        're-implemented in PyTorch, and head tissues (labels, volumes and surface meshes).',
    }
    container_type = environ.get('SYNTHBIDS_CONTAINER_TYPE')
    if container_type:
        container = {'Type': container_type}
        tag = environ.get('SYNTHBIDS_CONTAINER_TAG')
        if tag:
            container['Tag'] = tag
        generated['Container'] = container
    source = {'URL': Path(bids_dir).resolve().as_uri()}
    if raw_description.get('DatasetDOI'):
        doi = str(raw_description['DatasetDOI'])
        source['DOI'] = doi if doi.startswith('doi:') else f'doi:{doi}'
    if raw_description.get('Version'):
        source['Version'] = str(raw_description['Version'])
    desc = {
        'Name': f'synthbids outputs for {raw_description.get("Name", Path(bids_dir).name)}',
        'BIDSVersion': BIDS_VERSION,
        'DatasetType': 'derivative',
        'GeneratedBy': [generated],
        'SourceDatasets': [source],
        'DatasetLinks': {'raw': Path(bids_dir).resolve().as_uri()},
        'HowToAcknowledge': 'Cite SynthStrip and SynthSeg and describe the processing with '
        'the boilerplate in logs/CITATION.md.',
    }
    if raw_description.get('License'):
        desc['License'] = raw_description['License']
    return desc


def write_dataset_files(
    output_dir: Path,
    *,
    version: str,
    bids_dir: Path,
    raw_description: dict,
    lookup_tables: dict[str, list[dict]] | None = None,
) -> list[Path]:
    """Write the dataset-level files; ``lookup_tables`` maps a ``desc-`` label to LUT rows."""
    output_dir = Path(output_dir)
    written = [
        write_json(
            output_dir / 'dataset_description.json',
            dataset_description(version, bids_dir, raw_description),
        ),
        write_text(output_dir / '.bidsignore', '\n'.join(BIDSIGNORE) + '\n'),
        write_tsv(
            output_dir / 'descriptions.tsv',
            ['desc_id', 'description'],
            [{'desc_id': k, 'description': v} for k, v in DESCRIPTIONS.items()],
        ),
    ]
    for seg, rows in (lookup_tables or {}).items():
        columns = [
            c for c in ('index', 'name', 'abbreviation', 'color') if any(c in r for r in rows)
        ]
        written.append(write_tsv(output_dir / f'desc-{seg}_dseg.tsv', columns, rows))
    return written
