"""Settings of one ``synthbids`` run: frozen dataclasses built once by the CLI.

Everything a run depends on lives here and is passed explicitly to the workflow factories
(no global configuration module). A copy is written as TOML to
``<output_dir>/sub-<label>/log/<run_uuid>/synthbids.toml`` for provenance, and
:func:`from_toml` reads it back.
"""

from __future__ import annotations

import datetime
import typing
import uuid
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

#: SynthSeg's recommended threshold: QC scores below it suggest a failed structure.
QC_THRESHOLD = 0.65


#: Sidecar (``ModelSettings``) name of each option of the network nodes: the one place that
#: turns interface inputs into metadata.
SIDECAR_NAMES = {
    'border': 'Border',
    'no_csf': 'NoCSF',
    'robust': 'Robust',
    'parc': 'Parcellation',
    'qc': 'QC',
    'fast': 'Fast',
    'ct': 'CT',
    'keepgeom': 'KeepGeometry',
    'posteriors': 'Posteriors',
    'refine': 'IntensityRefinement',
}
STRIP_OPTIONS = ('border', 'no_csf')
SEG_OPTIONS = ('robust', 'parc', 'qc', 'fast', 'ct', 'keepgeom', 'posteriors')


def sidecar_settings(options: dict) -> dict:
    """``ModelSettings`` sidecar entry of a node's options (see :data:`SIDECAR_NAMES`)."""
    return {SIDECAR_NAMES[k]: v for k, v in options.items()}


@dataclass(frozen=True)
class ModelSettings:
    """Which networks run, with which options (everything that changes the results)."""

    strip_model: Path | None = None  # resolved weights file (the CLI resolves defaults)
    seg_model: Path | None = None
    head_model: Path | None = None
    no_csf: bool = False
    border: float = 1.0
    segment: bool = True
    parc: bool = False
    robust: bool = False
    fast: bool = False
    qc: bool = True
    posteriors: bool = False
    keepgeom: bool = False
    seg_refine: bool | None = None  # None: the weights' own default (core.seg_model)
    head: bool = True  # head tissues (labels, volumes, meshes) of every 3-D anatomical image
    strip_sha256: str | None = None  # SHA-256 of the resolved files, hashed once per run
    seg_sha256: str | None = None
    head_sha256: str | None = None

    @property
    def seg_label(self) -> str:
        """The ``desc-`` label of the segmentation this configuration produces."""
        return 'aparcaseg' if self.parc else 'aseg'

    def strip_inputs(self) -> dict:
        """Inputs of the SynthStrip interface (``interfaces.synthstrip``)."""
        inputs = {k: getattr(self, k) for k in STRIP_OPTIONS}
        inputs['model'] = str(self.strip_model)
        if self.strip_sha256:
            inputs['model_sha256'] = self.strip_sha256
        return inputs

    def seg_inputs(self, ct: bool) -> dict:
        """Inputs of the SynthSeg interface (``interfaces.synthseg``) for one image."""
        inputs = {k: getattr(self, k) for k in SEG_OPTIONS if k != 'ct'}
        inputs['ct'] = ct
        if self.seg_refine is not None:
            inputs['refine'] = 'on' if self.seg_refine else 'off'
        if self.seg_model is not None:
            inputs['model'] = str(self.seg_model)
            if self.seg_sha256:
                inputs['model_sha256'] = self.seg_sha256
        return inputs

    def head_inputs(self) -> dict:
        """Inputs of the head-tissue interface (``interfaces.head``)."""
        inputs = {'model': str(self.head_model)}
        if self.head_sha256:
            inputs['model_sha256'] = self.head_sha256
        return inputs


@dataclass(frozen=True)
class ExecutionSettings:
    """Where things are, which data are selected, and the run's identity."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    run_uuid: str
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filters: dict = field(default_factory=dict)
    bids_database_dir: Path | None = None
    skip_bids_validation: bool = False
    reports_only: bool = False
    boilerplate_only: bool = False
    clean_workdir: bool = False
    output_spaces: tuple[str, ...] = ()  # --output-spaces, e.g. 'MNI152NLin2009cAsym:res-2'
    verbose: int = 0  # -1: quiet (warnings and errors only), 1: -v, 2: -vv
    version: str = '0+unknown'


@dataclass(frozen=True)
class NipypeSettings:
    """How the graph is executed (does not change results: never part of node hashes)."""

    plugin: str = 'MultiProc'
    plugin_args: dict = field(default_factory=dict)
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float | None = None
    gpu: bool = False
    low_mem: bool = False  # SynthSeg recomputes its full-resolution skips (same results)
    stop_on_first_crash: bool = False


@dataclass(frozen=True)
class Settings:
    execution: ExecutionSettings
    models: ModelSettings = field(default_factory=ModelSettings)
    nipype: NipypeSettings = field(default_factory=NipypeSettings)


def new_run_uuid(now: datetime.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS_<uuid4>``, as the NiPreps name their runs."""
    now = now or datetime.datetime.now()
    return f'{now:%Y%m%d-%H%M%S}_{uuid.uuid4()}'


def to_toml(settings: Settings) -> str:
    """Serialise ``settings`` as TOML (one table per section; ``None`` values are omitted)."""
    lines = ['# synthbids run settings', '']
    for f in fields(settings):
        section = getattr(settings, f.name)
        lines.append(f'[{f.name}]')
        nested = []
        for key, value in asdict(section).items():
            if value is None:
                continue
            if isinstance(value, dict):
                nested.append((key, value))
                continue
            lines.append(f'{key} = {_toml_value(value)}')
        for key, value in nested:
            lines.append('')
            lines.append(f'[{f.name}.{key}]')
            for k, v in value.items():
                lines.append(f'{_toml_key(k)} = {_toml_value(v)}')
        lines.append('')
    return '\n'.join(lines)


def _toml_key(key) -> str:
    key = str(key)
    if key.replace('_', '').replace('-', '').isalnum():
        return key
    return _toml_value(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        escaped = value.replace('\\', '\\\\').replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return '[' + ', '.join(_toml_value(v) for v in value) + ']'
    if isinstance(value, dict):
        inner = ', '.join(f'{_toml_key(k)} = {_toml_value(v)}' for k, v in value.items())
        return '{ ' + inner + ' }'
    if value is None:  # TOML has no null (e.g. a BIDS filter asking for an absent entity)
        return '"null"'
    if is_dataclass(value):
        return _toml_value(asdict(value))
    return _toml_value(str(value))


def from_toml(text: str) -> Settings:
    """Read back what :func:`to_toml` wrote (a run's ``synthbids.toml``).

    Keys this version does not know are ignored; ``"null"`` inside tables (BIDS filters) is
    ``None`` again, as written."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data = tomllib.loads(text)
    sections = typing.get_type_hints(Settings)
    return Settings(**{name: _section(cls, data.get(name, {})) for name, cls in sections.items()})


def _section(cls, table: dict):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    return cls(**{k: _from_toml_value(hints[k], v) for k, v in table.items() if k in known})


def _from_toml_value(hint, value):
    if isinstance(value, dict):
        return {k: _from_toml_value(None, v) for k, v in value.items()}
    if value == 'null' and hint is None:  # inside a table: TOML has no null
        return None
    if hint is not None and Path in (hint, *typing.get_args(hint)):
        return Path(value)
    if typing.get_origin(hint) is tuple:
        return tuple(value)
    return value
