"""Output spaces: TemplateFlow templates named as fMRIPrep's ``--output-spaces`` names them,
found in TemplateFlow's local cache without ever downloading during a run.

``MNI152NLin2009cAsym``, ``MNI152NLin2009cAsym:res-2``, ``MNIInfant:cohort-1:res-1``. A
template is looked up in ``$TEMPLATEFLOW_HOME`` through ``templateflow.api.ls`` (which lists,
never fetches); files that are absent, or the zero-size placeholders of TemplateFlow's
skeleton, stop the run before it starts with one line naming them and the command that
fetches them (:func:`prefetch`, ``scripts/fetch_templates.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UsageError

#: Spaces fMRIPrep accepts that are not volumetric templates (we write native outputs always,
#: and no surfaces).
NOT_TEMPLATES = ('T1w', 'T2w', 'anat', 'func', 'run', 'sbref', 'boldref', 'fsnative', 'fslr')
_MODIFIER = re.compile(r'^(res|cohort)-([A-Za-z0-9]+)$')
_NAME = re.compile(r'^[A-Za-z0-9]+$')


@dataclass(frozen=True)
class Space:
    """A template and its modifiers (``res``, ``cohort``)."""

    name: str
    cohort: str | None = None
    res: str | None = None

    @property
    def fullname(self) -> str:
        mods = [f'cohort-{self.cohort}'] * bool(self.cohort) + [f'res-{self.res}'] * bool(self.res)
        return ':'.join([self.name, *mods])

    @property
    def entities(self) -> dict[str, str]:
        """Entities of file names in this space (``res`` only when it was asked for)."""
        out = {'space': self.name}
        if self.cohort:
            out['cohort'] = self.cohort
        if self.res:
            out['res'] = self.res
        return out


@dataclass(frozen=True)
class TemplateFiles:
    """What registration and resampling need of one space: the template's image (the output
    grid and the registration target) and its brain mask."""

    space: Space
    image: Path
    mask: Path
    resolution: float  # mm (largest voxel side of the image)
    description: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def resolution_text(self) -> str:
        return f'Template {self.space.name} ({self.resolution:g} mm voxels)'


def parse_output_spaces(values) -> list[Space]:
    """Spaces from ``--output-spaces`` values (duplicates dropped, order kept)."""
    out: list[Space] = []
    for value in values or ():
        name, *mods = str(value).split(':')
        if name in NOT_TEMPLATES or name.startswith('fsaverage'):
            raise UsageError(
                f'--output-spaces {value}: not a template; synthbids writes every output in '
                "the image's own space anyway, and makes no surfaces"
            )
        if not _NAME.match(name):
            raise UsageError(f'--output-spaces {value}: {name!r} is not a TemplateFlow name')
        found = {}
        for mod in mods:
            match = _MODIFIER.match(mod)
            if not match or match.group(1) in found:
                raise UsageError(
                    f'--output-spaces {value}: bad modifier {mod!r} (use :res-<label> and '
                    ':cohort-<label>)'
                )
            found[match.group(1)] = match.group(2)
        space = Space(name, found.get('cohort'), found.get('res'))
        if space not in out:
            out.append(space)
    return out


_CLIENTS: dict = {}


def _api():
    """A TemplateFlow client for the current ``$TEMPLATEFLOW_HOME`` (read now, not when
    templateflow was first imported), imported lazily and never updating its skeleton from
    the network."""
    os.environ.setdefault('TEMPLATEFLOW_AUTOUPDATE', '0')
    from templateflow.api import TemplateFlowClient

    root = os.environ.get('TEMPLATEFLOW_HOME') or None
    if root not in _CLIENTS:
        _CLIENTS[root] = TemplateFlowClient(root=root)
    return _CLIENTS[root]


def _home() -> str:
    return str(_api().cache.config.root)


def _resolution_query(res: str | None):
    if res is None:
        return None
    return int(res) if res.isdigit() else res


def _candidates(api, space: Space, **query) -> list[Path]:
    """Files of ``space`` matching ``query``: the requested resolution; without one, res-1,
    else files with no ``res-`` (templates with a single resolution), else the finest."""
    base = {'cohort': space.cohort} if space.cohort else {}
    base.update(query)
    if space.res is not None:
        return sorted(api.ls(space.name, resolution=_resolution_query(space.res), **base))
    for attempt in (
        lambda: api.ls(space.name, resolution=1, **base),
        lambda: [p for p in api.ls(space.name, **base) if '_res-' not in Path(p).name],
        lambda: api.ls(space.name, **base),
    ):
        found = sorted(attempt())
        if found:
            return found[:1]
    return []


def _query_list(space: Space) -> dict[str, dict]:
    return {
        'image': {'suffix': 'T1w', 'desc': None, 'extension': '.nii.gz'},
        'mask': {'suffix': 'mask', 'desc': 'brain', 'extension': '.nii.gz'},
    }


def _missing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not Path(p).is_file() or Path(p).stat().st_size == 0]


def resolve_template(space: Space | str) -> TemplateFiles:
    """The files of one output space, all present in the local TemplateFlow cache."""
    if isinstance(space, str):
        (space,) = parse_output_spaces([space])
    api = _api()
    if space.name not in api.templates():
        raise UsageError(
            f'--output-spaces {space.fullname}: template {space.name} is not in '
            f'TEMPLATEFLOW_HOME={_home()} (known: {", ".join(sorted(api.templates())) or "none"})'
        )
    found, missing = {}, []
    for key, query in _query_list(space).items():
        paths = _candidates(api, space, **query)
        if not paths:
            if key == 'image':  # templates of other species/modalities may have a T2w only
                paths = _candidates(api, space, **{**query, 'suffix': 'T2w'})
            if not paths:
                desc = f'desc-{query["desc"]}_' if query['desc'] else ''
                missing.append(f'no {desc}{query["suffix"]} file')
                continue
        found[key] = Path(paths[0])
    empty = _missing(list(found.values()))
    if missing or empty:
        what = [str(p) for p in empty] + missing
        raise UsageError(
            f'--output-spaces {space.fullname}: not in TEMPLATEFLOW_HOME={_home()}: '
            f'{"; ".join(what)}; fetch on a machine with network: '
            f'python scripts/fetch_templates.py {space.fullname}'
        )
    import nibabel as nib

    zooms = nib.load(found['image']).header.get_zooms()[:3]
    description = {}
    desc_file = Path(found['image']).parent / 'template_description.json'
    if desc_file.is_file():
        import json

        try:
            description = json.loads(desc_file.read_text())
        except ValueError:
            description = {}
    return TemplateFiles(space, found['image'], found['mask'], float(max(zooms)), description)


def resolve_templates(values) -> list[TemplateFiles]:
    """Every requested space's files (fails on the first missing one)."""
    return [resolve_template(space) for space in parse_output_spaces(values)]


def prefetch(values) -> list[Path]:
    """Download (with ``templateflow.api.get``) what :func:`resolve_template` needs."""
    api = _api()
    fetched: list[Path] = []
    for space in parse_output_spaces(values):
        base = {'cohort': space.cohort} if space.cohort else {}
        resolution = _resolution_query(space.res)
        for query in _query_list(space).values():
            got = api.get(space.name, resolution=resolution, **base, **query)
            fetched += [Path(p) for p in (got if isinstance(got, list) else [got])]
    return fetched
