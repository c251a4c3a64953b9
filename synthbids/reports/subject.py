"""The participant report, ``<output_dir>/sub-<label>.html``.

Assembled from the derivatives after the run (figures are linked from
``sub-<label>/figures/``, not embedded, so large studies stay light): a summary, one section
per image (mask and segmentation mosaics, head tissues with the rendered skull surface, the
interactive viewer (:mod:`.viewer`), QC scores with flags, volumes, weights, files), the
methods boilerplate and the errors of the run (crash files).
"""

from __future__ import annotations

import html
import logging
import re
import traceback
from datetime import datetime
from pathlib import Path

from ..bids.citation import readable_citations
from ..bids.files import write_text
from ..config import QC_THRESHOLD
from .collect import (
    ImageOutputs,
    collect_outputs,
    mask_volume,
    read_head_volumes,
    read_qc,
    read_volumes,
)
from .templates import render
from .viewer import bundle_manifest, install_bundle, write_image_viewer

log = logging.getLogger(__name__)

#: Volumes shown in the main table (all are in the collapsible full table).
KEY_VOLUMES = (
    'total intracranial',
    'left cerebral white matter',
    'right cerebral white matter',
    'left cerebral cortex',
    'right cerebral cortex',
    'left lateral ventricle',
    'right lateral ventricle',
    'left hippocampus',
    'right hippocampus',
)


def generate_reports(
    output_dir: Path, subjects, run_uuid: str | None = None, work_dir: Path | None = None
) -> list[str]:
    """Write the report of every subject; returns those whose report failed.

    A failure is logged to ``logs/report-<run_uuid>-<subject>.err`` and does not stop the
    other reports; an output folder that cannot be written (OutputError) stops them all.
    """
    from ..core.errors import OutputError

    failed = []
    for subject in subjects:
        try:
            generate_subject_report(output_dir, subject, run_uuid, work_dir)
        except OutputError:
            raise  # a full or read-only output folder: every other report would fail too
        except Exception as err:  # a report must never hide the others
            failed.append(subject)
            log.error('report of sub-%s failed: %s', subject, err)
            err_file = Path(output_dir) / 'logs' / f'report-{run_uuid}-{subject}.err'
            try:
                write_text(err_file, traceback.format_exc())
            except Exception:  # noqa: S110 - nothing more we can do
                pass
    return failed


def generate_subject_report(
    output_dir: Path, subject: str, run_uuid: str | None = None, work_dir: Path | None = None
) -> Path:
    output_dir = Path(output_dir)
    images = collect_outputs(output_dir, subject)
    log_dir = _log_dir(output_dir, subject, run_uuid)
    sections = [_image_section(output_dir, image) for image in images]
    bundle = _add_viewers(output_dir, subject, images, sections)
    flagged = sum(s['n_flagged'] for s in sections)
    settings = ''
    if log_dir is not None and (log_dir / 'synthbids.toml').is_file():
        settings = (log_dir / 'synthbids.toml').read_text()
    citation = output_dir / 'logs' / 'CITATION.md'
    methods = readable_citations(citation.read_text()) if citation.is_file() else ''
    context = {
        'title': f'sub-{subject}',
        'subject': subject,
        'sessions': sorted({im.source.session for im in images if im.source.session}),
        'images': sections,
        'n_flagged': flagged,
        'threshold': QC_THRESHOLD,
        'version': _version(output_dir),
        'run_uuid': log_dir.name if log_dir is not None else (run_uuid or 'unknown'),
        'date': datetime.now().strftime('%Y-%m-%d %H:%M'),
        'boilerplate': markdown(methods) if methods else '',
        'qc_run': any(s['qc'] for s in sections),
        'warnings': _warnings(sections),
        'errors': _errors(log_dir, work_dir),
        'settings': settings,
        'viewer_bundle': bundle,
        'viewer_version': bundle_manifest()['version'],
    }
    out = output_dir / f'sub-{subject}.html'
    write_text(out, render('subject.html.j2', **context))
    return out


def _image_section(output_dir: Path, image: ImageOutputs) -> dict:
    volumes = read_volumes(output_dir / image.volumes) if image.volumes else []
    qc = read_qc(output_dir / image.qc) if image.qc else []
    n_flagged = sum(1 for r in qc if r['score'] is not None and r['score'] < QC_THRESHOLD)
    weights = _weights(image)
    settings = {}
    for kind in ('mask', 'dseg'):
        settings.update(image.meta.get(kind, {}).get('ModelSettings', {}))
    brain_volume = None
    if image.mask:
        try:
            brain_volume = mask_volume(output_dir / image.mask)
        except Exception:  # unreadable mask: shown as missing
            brain_volume = None
    head_volumes = {}
    if image.head_volumes:
        head_volumes = read_head_volumes(output_dir / image.head_volumes)
    return {
        'name': image.source.bids_name,
        'anchor': image.anchor,
        'source': image.source.relpath,
        'suffix': image.source.suffix,
        'session': image.source.session,
        'mask_figure': image.figure(output_dir, 'brainmask'),
        'seg_figure': image.figure(output_dir, image.seg) if image.seg else None,
        'seg': image.seg,
        'head': bool(image.head_dseg),
        'head_figure': image.figure(output_dir, 'head'),
        'skull_figure': image.figure(output_dir, 'skull', '.png'),
        'head_volumes': [(k.replace('_', ' '), v) for k, v in head_volumes.items()],
        'bone_volume': head_volumes.get('bone'),
        'head_meshes': [m for m in image.head_meshes if m.endswith('.surf.gii')],
        'tissue_dseg': image.tissue_dseg,
        'templates': [
            {'name': name, 'figure': image.figure(output_dir, None, space=name), 'files': files}
            for name, files in sorted(image.templates.items())
        ],
        'qc': qc,
        'n_flagged': n_flagged,
        'key_volumes': [v for v in volumes if v['name'] in KEY_VOLUMES],
        'volumes': volumes,
        'brain_volume': brain_volume,
        'weights': weights,
        'settings': settings,
        'files': image.files,
    }


def _add_viewers(output_dir: Path, subject: str, images, sections) -> str | None:
    """Write each image's viewer data (``section['viewer']``) and the NiiVue bundle; the
    bundle's path, or None when no viewer could be written (the figures remain)."""
    for image, section in zip(images, sections):
        section['viewer'] = write_image_viewer(output_dir, image)
    if not any(s['viewer'] for s in sections):
        return None
    try:
        return install_bundle(output_dir)
    except Exception as err:  # no viewer without NiiVue; the report keeps its figures
        log.warning('report viewer of sub-%s left out: %s', subject, err)
        for section in sections:
            section['viewer'] = None
        return None


def _weights(image: ImageOutputs) -> list[dict]:
    """The ``ModelWeights`` entries of the mask, segmentation and head-label sidecars, with
    their model (``Origin``, ``Accuracy`` and ``Warning`` come from
    :meth:`WeightsFile.describe`)."""
    out = []
    for kind in ('mask', 'dseg', 'head_dseg'):
        meta = image.meta.get(kind, {})
        for w in meta.get('ModelWeights', []):
            out.append({'model': meta.get('ModelName', ''), **w})
    return out


def _warnings(sections: list[dict]) -> list[dict]:
    """Each distinct warning of the weights that ran (early packaged models), once."""
    out = []
    for section in sections:
        for w in section['weights']:
            entry = {'name': w.get('Name', ''), 'text': w.get('Warning')}
            if entry['text'] and entry not in out:
                out.append(entry)
    return out


def _log_dir(output_dir: Path, subject: str, run_uuid: str | None) -> Path | None:
    logs = output_dir / f'sub-{subject}' / 'log'
    if run_uuid and (logs / run_uuid).is_dir():
        return logs / run_uuid
    runs = sorted(p for p in logs.glob('*') if p.is_dir()) if logs.is_dir() else []
    return runs[-1] if runs else None


def _errors(log_dir: Path | None, work_dir: Path | None) -> list[dict]:
    """Crash files of the run: the failed node, the last error line and the whole text."""
    if log_dir is None:
        return []
    out = []
    for crash in sorted(log_dir.glob('crash-*')):
        text = crash.read_text(errors='replace')
        if work_dir is not None:
            text = text.replace(str(work_dir), '<workdir>')
        node = re.search(r'^Node: (.+)$', text, re.M)
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        error_lines = [ln for ln in lines if re.match(r'^\w*(Error|Exception)\b', ln.strip())]
        out.append(
            {
                'file': crash.name,
                'node': node.group(1) if node else crash.name,
                'summary': (error_lines[-1] if error_lines else lines[-1] if lines else ''),
                'text': text,
            }
        )
    return out


def _version(output_dir: Path) -> str:
    import json

    try:
        desc = json.loads((output_dir / 'dataset_description.json').read_text())
        return desc['GeneratedBy'][0]['Version']
    except (OSError, ValueError, KeyError, IndexError):
        from .. import __version__

        return __version__


def markdown(text: str) -> str:
    """A small Markdown subset to HTML: headings, lists, paragraphs, emphasis and links."""
    out, para, items = [], [], []

    def inline(s: str) -> str:
        s = html.escape(s, quote=False)
        s = re.sub(r'\[([^\]]+)\]\((https?://[^)\s]+)\)', r'<a href="\2">\1</a>', s)
        s = re.sub(r'`([^`]+)`', r'<code>\1</code>', s)
        s = re.sub(r'\*\*([^*]+)\*\*', r'<strong>\1</strong>', s)
        s = re.sub(r'\*([^*]+)\*', r'<em>\1</em>', s)
        return s

    def flush():
        if para:
            out.append('<p>' + inline(' '.join(para)) + '</p>')
            para.clear()
        if items:
            out.append('<ul>' + ''.join(f'<li>{inline(i)}</li>' for i in items) + '</ul>')
            items.clear()

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r'^(#{1,6})\s+(.*)$', stripped)
        if heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)
            out.append(f'<h{level}>{inline(heading.group(2))}</h{level}>')
        elif stripped.startswith('- '):
            if para:
                flush()
            items.append(stripped[2:])
        elif not stripped:
            flush()
        else:
            if items:
                flush()
            para.append(stripped)
    flush()
    return '\n'.join(out)
