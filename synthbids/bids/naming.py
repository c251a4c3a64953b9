"""BIDS file names: parsing raw names and building derivative names.

Every derivative of an image keeps the image's entities (those the derivative rules of the
BIDS schema allow) and adds ``space-<suffix>`` unless the image is a T1w: as in the NiPreps,
no ``space-`` means the space of the T1w image, and ``space-T2w`` (the schema: "a reference
image to which a file has been aligned") names the T2w image the file is aligned to. This
keeps the mask and segmentation of a T1w and a T2w of one session from colliding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.imageio import EXTENSIONS as IMAGE_EXTENSIONS

#: Entity order of the BIDS schema (``rules/entities.yaml``), short names.
ENTITY_ORDER = (
    'sub', 'tpl', 'ses', 'cohort', 'sample', 'task', 'tracksys', 'acq', 'nuc', 'voi', 'ce',
    'trc', 'stain', 'rec', 'dir', 'run', 'mod', 'echo', 'flip', 'inv', 'mt', 'part', 'proc',
    'hemi', 'space', 'split', 'recording', 'chunk', 'atlas', 'seg', 'scale', 'res', 'den',
    'label', 'desc',
)  # fmt: skip

#: Source entities carried over to derivative names (allowed by the schema's derivative rules).
KEPT_ENTITIES = ('sub', 'ses', 'task', 'acq', 'ce', 'trc', 'rec', 'run', 'echo', 'part', 'chunk')

#: pybids entity names for the short names above.
PYBIDS_NAMES = {
    'sub': 'subject',
    'ses': 'session',
    'task': 'task',
    'acq': 'acquisition',
    'ce': 'ceagent',
    'trc': 'tracer',
    'rec': 'reconstruction',
    'run': 'run',
    'echo': 'echo',
    'part': 'part',
    'chunk': 'chunk',
    'space': 'space',
    'seg': 'segmentation',
    'label': 'label',
    'desc': 'desc',
}

#: The contrast whose derivatives carry no ``space-`` entity.
REFERENCE_SUFFIX = 'T1w'

#: Every extension a derivative can have: the images synthbids reads and writes, surface
#: meshes (GIfTI, STL), then text.
EXTENSIONS = IMAGE_EXTENSIONS + (
    '.surf.gii',
    '.stl',
    '.json',
    '.tsv',
    '.svg',
    '.html',
    '.png',
    '.bib',
    '.md',
)


def safe_name(text: str) -> str:
    """``text`` with every character that is not a letter or digit replaced by ``_`` (Nipype
    node names, HTML anchors)."""
    return ''.join(ch if ch.isalnum() else '_' for ch in text)


def split_extension(name: str) -> tuple[str, str]:
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition('.')
    return (stem, dot + ext) if dot else (name, '')


def parse_name(path: str | os.PathLike) -> tuple[dict[str, str], str, str]:
    """``(entities, suffix, extension)`` of a BIDS file name; entities keep file order."""
    stem, ext = split_extension(Path(path).name)
    parts = stem.split('_')
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition('-')
        if not sep:
            raise ValueError(f'{path}: not a BIDS file name ({part!r} is not key-value)')
        entities[key] = value
    suffix = parts[-1]
    if '-' in suffix:  # no suffix: the last part is an entity
        key, _, value = suffix.partition('-')
        entities[key] = value
        suffix = ''
    return entities, suffix, ext


def build_name(entities: dict[str, str], suffix: str, extension: str = '') -> str:
    """A BIDS file name with entities in schema order (unknown entities last, as given)."""
    known = [k for k in ENTITY_ORDER if entities.get(k) not in (None, '')]
    other = [k for k in entities if k not in ENTITY_ORDER and entities[k] not in (None, '')]
    parts = [f'{k}-{entities[k]}' for k in known + other]
    if suffix:
        parts.append(suffix)
    return '_'.join(parts) + extension


def dataset_relpath(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the dataset ``root`` ('/' separators), following no symbolic link
    of the file itself; folders are compared as written, then with their links resolved (a
    dataset reached through a linked folder). ValueError if ``path`` is not in ``root``."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    for candidate, base in ((path, root), (path.parent.resolve() / path.name, root.resolve())):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    raise ValueError(f'{path}: not inside the dataset {root}')


@dataclass(frozen=True)
class SourceImage:
    """A raw image to process: its path, its place in the dataset and its entities."""

    path: Path
    relpath: str  # relative to the dataset root, with '/' separators
    suffix: str
    datatype: str
    entities: dict = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_path(cls, path: str | os.PathLike, root: str | os.PathLike) -> SourceImage:
        """The image at ``path`` in the dataset at ``root``. Its place in the dataset (and so
        every derivative name) comes from the path inside the dataset, never from where a
        symbolic link points: DataLad/git-annex datasets link every image to
        ``.git/annex/objects/...``, and a link may point outside the dataset."""
        path = Path(path)
        rel = dataset_relpath(path, root)
        entities, suffix, _ = parse_name(rel)
        return cls(path, rel, suffix, Path(rel).parent.name, dict(entities))

    @classmethod
    def from_relpath(cls, relpath: str, root: str | os.PathLike = '') -> SourceImage:
        """From a path relative to the dataset root (the file need not exist)."""
        relpath = Path(relpath).as_posix()
        entities, suffix, _ = parse_name(relpath)
        path = Path(root) / relpath
        return cls(path, relpath, suffix, Path(relpath).parent.name, dict(entities))

    @property
    def subject(self) -> str:
        return self.entities['sub']

    @property
    def session(self) -> str | None:
        return self.entities.get('ses')

    @property
    def space(self) -> str | None:
        """``space-`` label of this image's derivatives (None for the reference contrast)."""
        return None if self.suffix == REFERENCE_SUFFIX else self.suffix

    @property
    def kept(self) -> dict[str, str]:
        return {k: v for k, v in self.entities.items() if k in KEPT_ENTITIES}

    @property
    def bids_name(self) -> str:
        """The image's name without extension, e.g. ``sub-01_ses-1_T2w`` (a unique key)."""
        return build_name(self.entities, self.suffix)

    @property
    def key(self) -> str:
        """A short identifier usable in Nipype node names."""
        return safe_name(self.bids_name)


def derivative_name(
    source: SourceImage,
    *,
    suffix: str,
    extension: str,
    desc: str | None = None,
    seg: str | None = None,
    label: str | None = None,
    space: str | None | bool = True,
    extra: dict | None = None,
) -> str:
    """Name of a derivative of ``source``; ``space=True`` uses the source's own space.
    ``extra``: more entities (``res``, ``cohort``; ``from``, ``to``, ``mode`` of transforms)."""
    entities = dict(source.kept)
    entities['space'] = source.space if space is True else (space or None)
    entities['seg'] = seg
    entities['label'] = label
    entities['desc'] = desc
    entities.update(extra or {})
    return build_name(entities, suffix, extension)


def derivative_relpath(source: SourceImage, name: str, datatype: str | None = None) -> str:
    """``sub-X/[ses-Y/]<datatype>/<name>`` for a derivative of ``source``."""
    parts = [f'sub-{source.subject}']
    if source.session:
        parts.append(f'ses-{source.session}')
    parts.append(datatype or source.datatype)
    parts.append(name)
    return '/'.join(parts)


def figure_relpath(
    source: SourceImage, desc: str | None, extension: str = '.svg', extra: dict | None = None
) -> str:
    """``sub-X/figures/<source entities>_desc-<desc>_<suffix>.svg`` (one per image);
    ``extra`` entities (e.g. ``space`` of a template) come in schema order."""
    entities = dict(source.kept)
    entities.update(extra or {})
    entities['desc'] = desc
    return f'sub-{source.subject}/figures/' + build_name(entities, source.suffix, extension)
