"""Group level: one row per processed image in ``group_volumes.tsv`` and ``group_qc.tsv``,
and ``group.html`` with the distributions, QC outliers and links to participant reports.

``group_volumes.tsv`` holds the brain-mask volume, the head-tissue volumes (``head_<class>_ml``,
mL) and the SynthSeg volumes (mm^3, ``mri_synthseg``'s names)."""

from __future__ import annotations

from pathlib import Path

from ..bids.files import write_json, write_text, write_tsv
from ..bids.layout import NoInputError
from ..bids.naming import KEPT_ENTITIES, safe_name
from ..config import QC_THRESHOLD
from .collect import (
    ImageOutputs,
    collect_outputs,
    mask_volume,
    read_head_volumes,
    read_qc,
    read_volumes,
    select_outputs,
)
from .reportlets import plot_strips
from .templates import render

BRAIN_MASK = 'brain mask'
#: Distributions shown in the group report, when present.
SHOWN_VOLUMES = (
    BRAIN_MASK,
    'total intracranial',
    'left cerebral white matter',
    'left cerebral cortex',
    'left lateral ventricle',
    'left hippocampus',
    'right hippocampus',
    'brain-stem',
)
#: Head-tissue columns: ``head_<class>_ml`` (``other soft tissue``: ``other_soft_tissue``).
HEAD_PREFIX, HEAD_UNIT = 'head_', '_ml'


def head_column(name: str) -> str:
    """Group column of a head-tissue class (a column of the per-image table)."""
    return f'{HEAD_PREFIX}{name.replace(" ", "_")}{HEAD_UNIT}'


#: Robust z-score beyond which a volume is listed as unusual.
Z_OUTLIER = 3.5


def _entity_columns(images: list[ImageOutputs]) -> list[str]:
    present = {k for im in images for k in im.source.entities}
    return [k for k in KEPT_ENTITIES if k in present] + ['suffix']


def _id_columns(image: ImageOutputs) -> dict:
    row = {'bids_name': image.source.bids_name}
    row.update(image.source.entities)
    row['suffix'] = image.source.suffix
    return row


def build_tables(output_dir: Path, images: list[ImageOutputs]):
    """``(volume columns, volume rows, qc columns, qc rows)``; values as floats."""
    ids = ['bids_name', *_entity_columns(images)]
    vol_names: list[str] = [BRAIN_MASK]
    head_names: list[str] = []
    qc_names: list[str] = []
    vol_rows, qc_rows = [], []
    for image in images:
        row = _id_columns(image)
        row['seg'] = image.seg
        row[BRAIN_MASK] = mask_volume(output_dir / image.mask) if image.mask else None
        if image.head_volumes:
            for name, value in read_head_volumes(output_dir / image.head_volumes).items():
                row[head_column(name)] = value
                if head_column(name) not in head_names:
                    head_names.append(head_column(name))
        if image.volumes:
            for v in read_volumes(output_dir / image.volumes):
                row[v['name']] = v['volume']
                if v['name'] not in vol_names:
                    vol_names.append(v['name'])
        vol_rows.append(row)
        if image.qc:
            qrow = _id_columns(image)
            scores = read_qc(output_dir / image.qc)
            for s in scores:
                qrow[s['structure']] = s['score']
                if s['structure'] not in qc_names:
                    qc_names.append(s['structure'])
            values = [s['score'] for s in scores if s['score'] is not None]
            qrow['qc_min'] = min(values) if values else None
            qrow['qc_flags'] = sum(1 for v in values if v < QC_THRESHOLD)
            qc_rows.append(qrow)
    vol_cols = ids + ['seg'] + vol_names[:1] + head_names + vol_names[1:]
    qc_cols = ids + qc_names + ['qc_min', 'qc_flags']
    return vol_cols, vol_rows, qc_cols, qc_rows


def robust_z(values: list[float | None]) -> list[float | None]:
    """(x - median) / (1.4826 MAD); None where undefined."""
    xs = sorted(v for v in values if v is not None)
    if len(xs) < 3:
        return [None] * len(values)
    med = _median(xs)
    mad = _median(sorted(abs(v - med) for v in xs)) * 1.4826
    if mad == 0:
        return [None] * len(values)
    return [None if v is None else (v - med) / mad for v in values]


def _median(xs: list[float]) -> float:
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def run_group(
    output_dir: Path, participant_label: tuple[str, ...] = (), session_label: tuple[str, ...] = ()
) -> list[Path]:
    """Write the group tables and report of the selected participants and sessions (all by
    default); NoInputError when there is nothing to gather, FilterError when the labels
    select nothing."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise NoInputError(
            f'{output_dir}: no participant outputs (run the participant level first)'
        )
    images = collect_outputs(output_dir)
    if not images:
        raise NoInputError(
            f'{output_dir}: no participant outputs found (run the participant level first)'
        )
    images = select_outputs(images, output_dir, participant_label, session_label)
    vol_cols, vol_rows, qc_cols, qc_rows = build_tables(output_dir, images)
    written = [
        write_tsv(output_dir / 'group_volumes.tsv', vol_cols, vol_rows),
        write_json(output_dir / 'group_volumes.json', _volumes_dictionary(vol_cols)),
    ]
    if qc_rows:
        written += [
            write_tsv(output_dir / 'group_qc.tsv', qc_cols, qc_rows),
            write_json(output_dir / 'group_qc.json', _qc_dictionary(qc_cols)),
        ]
    written.append(write_group_report(output_dir, vol_cols, vol_rows, qc_cols, qc_rows))
    return written


def participants_without_outputs(
    output_dir: Path, bids_dir: Path | None = None, participant_label: tuple[str, ...] = ()
) -> list[str]:
    """Labels of the participants the group tables leave out for lack of outputs: folders
    ``sub-<label>`` of the output folder without any image outputs (a run that failed), and
    participants of the input dataset (when it is there) without a folder in the output
    folder; only those of ``participant_label`` when given."""
    output_dir = Path(output_dir)
    with_outputs = {im.source.subject for im in collect_outputs(output_dir)}
    candidates = {p.name[4:] for p in output_dir.glob('sub-*') if p.is_dir()}
    if bids_dir is not None and Path(bids_dir).is_dir():
        candidates |= {p.name[4:] for p in Path(bids_dir).glob('sub-*') if p.is_dir()}
    if participant_label:
        candidates &= set(participant_label)
    return sorted(candidates - with_outputs)


def _report_link(row: dict) -> str:
    anchor = safe_name(row['bids_name'])
    return f'sub-{row["sub"]}.html#{anchor}'


def write_group_report(output_dir, vol_cols, vol_rows, qc_cols, qc_rows) -> Path:
    id_cols = {'bids_name', 'seg', 'suffix', *KEPT_ENTITIES}
    qc_names = [c for c in qc_cols if c not in id_cols and c not in ('qc_min', 'qc_flags')]
    qc_plot = None
    if qc_rows:
        qc_plot = plot_strips(
            {n: [(r.get(n), r['bids_name'], _report_link(r)) for r in qc_rows] for n in qc_names},
            threshold=QC_THRESHOLD,
            xlim=(0, 1),
            xlabel='QC score',
        )
    head_names = [c for c in vol_cols if c.startswith(HEAD_PREFIX) and c.endswith(HEAD_UNIT)]
    head_plot = plot_strips(
        {
            n[len(HEAD_PREFIX) : -len(HEAD_UNIT)].replace('_', ' '): [
                (r.get(n), r['bids_name'], _report_link(r)) for r in vol_rows
            ]
            for n in head_names
        },
        xlabel='volume (mL)',
    )
    vol_names = [c for c in SHOWN_VOLUMES if c in vol_cols]
    vol_plot = plot_strips(
        {
            n: [(r.get(n), r['bids_name'], _report_link(r)) for r in vol_rows]
            for n in vol_names
            if any(r.get(n) is not None for r in vol_rows)
        },
        xlabel='volume (mm\u00b3)',
    )
    qc_outliers = []
    for r in sorted(qc_rows, key=lambda r: (r['qc_min'] is None, r['qc_min'] or 0)):
        failed = [n for n in qc_names if r.get(n) is not None and r[n] < QC_THRESHOLD]
        if failed:
            qc_outliers.append(
                {
                    'name': r['bids_name'],
                    'link': _report_link(r),
                    'min': r['qc_min'],
                    'failed': failed,
                }
            )
    vol_outliers = []
    for name in vol_names:
        zs = robust_z([r.get(name) for r in vol_rows])
        for r, z in zip(vol_rows, zs):
            if z is not None and abs(z) > Z_OUTLIER:
                vol_outliers.append(
                    {
                        'name': r['bids_name'],
                        'link': _report_link(r),
                        'structure': name,
                        'volume': r[name],
                        'z': z,
                    }
                )
    subjects = sorted({r['sub'] for r in vol_rows})
    images = [
        {
            'name': r['bids_name'],
            'link': _report_link(r),
            'sub': r['sub'],
            'ses': r.get('ses'),
            'suffix': r['suffix'],
            'brain': r.get(BRAIN_MASK),
            'bone': r.get(head_column('bone')),
            'qc_min': next(
                (q['qc_min'] for q in qc_rows if q['bids_name'] == r['bids_name']), None
            ),
        }
        for r in vol_rows
    ]
    from .subject import _version

    html = render(
        'group.html.j2',
        title='group',
        version=_version(output_dir),
        subjects=subjects,
        images=images,
        n_images=len(vol_rows),
        threshold=QC_THRESHOLD,
        z_outlier=Z_OUTLIER,
        qc_plot=qc_plot,
        vol_plot=vol_plot,
        head_plot=head_plot,
        has_head=bool(head_names),
        qc_outliers=qc_outliers,
        vol_outliers=vol_outliers,
        has_qc=bool(qc_rows),
    )
    return write_text(Path(output_dir) / 'group.html', html)


def _id_dictionary(columns) -> dict:
    names = {
        'bids_name': 'Source image: its BIDS name without extension',
        'sub': 'Participant label',
        'ses': 'Session label',
        'task': 'Task label',
        'acq': 'Acquisition label',
        'ce': 'Contrast agent label',
        'trc': 'Tracer label',
        'rec': 'Reconstruction label',
        'run': 'Run index',
        'echo': 'Echo index',
        'part': 'Part label',
        'chunk': 'Chunk index',
        'suffix': 'Contrast (BIDS suffix) of the source image',
        'seg': 'desc- label of the segmentation the volumes were measured on',
    }
    return {c: {'Description': names[c]} for c in columns if c in names}


def _volumes_dictionary(columns) -> dict:
    out = _id_dictionary(columns)
    for c in columns:
        if c == BRAIN_MASK:
            out[c] = {'Description': 'Volume of the SynthStrip brain mask', 'Units': 'mm^3'}
        elif c.startswith(HEAD_PREFIX) and c.endswith(HEAD_UNIT):
            name = c[len(HEAD_PREFIX) : -len(HEAD_UNIT)].replace('_', ' ')
            out[c] = {
                'Description': f'Volume of {name} from the head-tissue network (sum of the '
                'class probabilities; desc-head_volumes.tsv)',
                'Units': 'mL',
            }
        elif c not in out:
            out[c] = {'Description': f'SynthSeg volume of {c}', 'Units': 'mm^3'}
    return out


def _qc_dictionary(columns) -> dict:
    out = _id_dictionary(columns)
    for c in columns:
        if c == 'qc_min':
            out[c] = {'Description': 'Lowest QC score of the image'}
        elif c == 'qc_flags':
            out[c] = {'Description': f'Number of QC scores below {QC_THRESHOLD}'}
        elif c not in out:
            out[c] = {'Description': f'SynthSeg QC score of {c} (1: best)'}
    return out
