"""Finding the images to process in a BIDS dataset (pybids), with filters and light validation.

Only the requested subjects are indexed, so a one-participant cluster job does not pay for
indexing the whole dataset; ``--bids-database-dir`` keeps the index between runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..core.errors import InputError, SynthbidsError
from .naming import PYBIDS_NAMES, SourceImage

log = logging.getLogger(__name__)

#: Suffixes processed by default: anatomical MRI contrasts, then PET and CT where present.
SUFFIXES = ('T1w', 'T2w', 'FLAIR', 'PDw', 'T2starw', 'T2star', 'PD', 'pet', 'ct')
IMAGE_EXTENSIONS = ('.nii', '.nii.gz')


class NoInputError(SynthbidsError):
    """The input dataset is missing or is not a BIDS dataset."""

    exit_code = 66  # EX_NOINPUT


class FilterError(SynthbidsError):
    """The participant/session labels or the BIDS filters selected no files."""

    exit_code = 18  # BIDS-Apps execution spec: entity filters selected no files


class FilterFileError(SynthbidsError):
    """The ``--bids-filter-file`` cannot be used."""

    exit_code = 64  # EX_USAGE


class ValidationError(SynthbidsError):
    """The input dataset failed validation."""

    exit_code = 16  # BIDS-Apps execution spec: BIDS validation failed


def strip_prefix(labels: Iterable[str] | None, prefix: str) -> tuple[str, ...]:
    """Labels without their ``sub-``/``ses-`` prefix, de-duplicated, order kept."""
    out: list[str] = []
    for label in labels or ():
        label = label.strip()
        if label.startswith(prefix):
            label = label[len(prefix) :]
        if label and label not in out:
            out.append(label)
    return tuple(out)


def check_dataset(bids_dir: Path) -> dict:
    """The parsed ``dataset_description.json``; NoInputError when ``bids_dir`` is not BIDS."""
    if not bids_dir.exists():
        raise NoInputError(f'{bids_dir}: input dataset not found')
    if not bids_dir.is_dir():
        raise NoInputError(f'{bids_dir}: the input dataset must be a folder')
    desc = bids_dir / 'dataset_description.json'
    if desc.is_symlink() and not desc.exists():
        from .inputs import check_content

        check_content(bids_dir, [desc])  # a DataLad dataset not fetched, or a broken link
    if not desc.is_file():
        raise NoInputError(f'{bids_dir}: not a BIDS dataset (no dataset_description.json)')
    try:
        return json.loads(desc.read_text())
    except (OSError, ValueError) as err:
        raise InputError(desc, f'cannot read dataset_description.json ({err})') from None


def load_filters(path: Path | None) -> dict:
    """Read ``--bids-filter-file``: ``{"<suffix in lower case>": {entity: value}}``.

    ``null`` selects files without the entity and ``"*"`` files with any value of it.
    """
    if path is None:
        return {}
    try:
        filters = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FilterFileError(f'{path}: no such BIDS filter file') from None
    except (OSError, ValueError) as err:
        raise FilterFileError(f'{path}: not a valid JSON filter file ({err})') from None
    valid = {s.lower() for s in SUFFIXES}
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise FilterFileError(f'{path}: expected {{"t1w": {{"acquisition": "..."}}, ...}}')
    unknown = sorted(set(filters) - valid)
    if unknown:
        raise FilterFileError(
            f'{path}: unknown filter key(s) {", ".join(unknown)}; '
            f'valid keys are {", ".join(sorted(valid))}'
        )
    entities = filter_entities()
    for key, query in filters.items():
        for name in query:
            if name not in entities:
                raise FilterFileError(
                    f'{path}: unknown entity {name!r} in the "{key}" filter'
                    f'{_did_you_mean(name, entities)}; valid entities (pybids names): '
                    f'{", ".join(entities)}'
                )
    return filters


def filter_entities() -> list[str]:
    """The entity names a BIDS filter may use: those of pybids' BIDS configuration."""
    from bids.layout.models import Config

    return sorted(Config.load('bids').entities)


def _did_you_mean(name: str, entities: list[str]) -> str:
    import difflib

    if PYBIDS_NAMES.get(name) in entities:  # a short name: 'acq' for 'acquisition'
        return f' (did you mean {PYBIDS_NAMES[name]!r}?)'
    close = difflib.get_close_matches(name, entities, n=1)
    return f' (did you mean {close[0]!r}?)' if close else ''


def _query_value(value):
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == '*':
        return Query.REQUIRED
    return value


def index_dataset(bids_dir: Path, participants: Sequence[str], database_dir: Path | None):
    """A pybids layout over ``bids_dir``, indexing only ``participants`` when given.

    With ``database_dir`` the index is kept in a subfolder named after the dataset and the
    participant selection: the next run with the same selection reuses it, and jobs with
    different selections (a cluster array) never share, or lock, one SQLite file.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    ignore: list = ['code', 'stimuli', 'sourcedata', 'models', 'derivatives', re.compile(r'/\.')]
    if participants:
        alternatives = '|'.join(re.escape(p) for p in participants)
        ignore.append(re.compile(rf'^/sub-(?!({alternatives})(/|$))'))
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=False)
    kwargs = {}
    if database_dir is not None:
        key = hashlib.sha1(  # noqa: S324 - a folder name, not security
            '\n'.join([str(Path(bids_dir).resolve()), *sorted(participants)]).encode()
        ).hexdigest()[:12]
        folder = Path(database_dir) / f'index-{key}'
        folder.mkdir(parents=True, exist_ok=True)
        kwargs['database_path'] = folder
    return BIDSLayout(str(bids_dir), validate=False, indexer=indexer, **kwargs)


def collect_images(
    bids_dir: Path,
    *,
    participant_label: Sequence[str] = (),
    session_label: Sequence[str] = (),
    filters: dict | None = None,
    database_dir: Path | None = None,
    layout=None,
    strict: bool = True,
) -> dict[str, list[SourceImage]]:
    """Images to process, grouped by subject label (sorted); FilterError if none.

    A file whose name cannot be parsed fails validation (``strict``) or is skipped with a
    warning (``--skip-bids-validation``).
    """
    filters = filters or {}
    layout = layout or index_dataset(bids_dir, participant_label, database_dir)
    subjects = sorted(layout.get_subjects())
    if participant_label:
        missing = [p for p in participant_label if p not in subjects]
        if missing:
            raise FilterError(
                f'participant label(s) not found in {bids_dir}: '
                + ', '.join(f'sub-{p}' for p in missing)
            )
        subjects = [s for s in subjects if s in participant_label]
    if not subjects:
        raise FilterError(f'{bids_dir}: no subjects found (no sub-<label> folders)')

    found: dict[str, list[SourceImage]] = {}
    for suffix in SUFFIXES:
        query = {
            'subject': subjects,
            'suffix': suffix,
            'extension': list(IMAGE_EXTENSIONS),
            'return_type': 'file',
        }
        if session_label:
            from bids.layout import Query

            query['session'] = [*session_label, Query.NONE]
        for key, value in filters.get(suffix.lower(), {}).items():
            query[key] = _query_value(value)
        try:
            files = layout.get(**query)
        except (ValueError, TypeError) as err:  # pybids: a filter it cannot use
            detail = str(err).split(" If you're sure")[0].strip()  # not pybids' own options
            raise FilterFileError(f'BIDS filter for {suffix.lower()}: {detail}') from None
        for f in files:
            try:
                image = SourceImage.from_path(f, bids_dir)
            except ValueError as err:
                if strict:
                    raise ValidationError(
                        f'{err} (use --skip-bids-validation to skip such files)'
                    ) from None
                log.warning('skipping %s', err)
                continue
            if image.suffix != suffix:  # pybids matched a longer suffix (e.g. T2star/T2starw)
                continue
            found.setdefault(image.subject, []).append(image)
    if not found:
        what = [f'participant(s) {", ".join(subjects)}']
        if session_label:
            what.append(f'session(s) {", ".join(session_label)}')
        if filters:
            what.append('the BIDS filter file')
        raise FilterError(
            'no images to process: '
            + ' and '.join(what)
            + f' selected no {", ".join(SUFFIXES)} image (.nii or .nii.gz)'
        )
    for images in found.values():
        images.sort(key=lambda im: (im.session or '', SUFFIXES.index(im.suffix), im.relpath))
    return dict(sorted(found.items()))


def validate_selection(bids_dir: Path, images: Iterable[SourceImage]) -> None:
    """Light validation: ``dataset_description.json`` fields and BIDS names of the inputs.

    This is not the full bids-validator (which needs Node.js or Deno); it catches a broken
    dataset description and misnamed files, the errors that break this app.
    """
    desc = check_dataset(bids_dir)
    problems = [f'dataset_description.json lacks "{k}"' for k in ('Name', 'BIDSVersion')]
    problems = [p for p, k in zip(problems, ('Name', 'BIDSVersion')) if k not in desc]
    from bids_validator import BIDSValidator

    validator = BIDSValidator()
    for image in images:
        if image.datatype == 'ct':  # no CT datatype in BIDS yet: accepted as is
            continue
        if not validator.is_bids('/' + image.relpath):
            problems.append(f'{image.relpath} is not a valid BIDS file name')
    if problems:
        more = f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''
        raise ValidationError(
            f'{bids_dir}: BIDS validation failed: {"; ".join(problems[:3])}{more} '
            '(use --skip-bids-validation to run anyway)'
        )


def pybids_entities(short: dict[str, str]) -> dict[str, str]:
    """pybids names for short entity names (unknown ones unchanged)."""
    return {PYBIDS_NAMES.get(k, k): v for k, v in short.items()}
