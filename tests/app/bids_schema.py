"""Checking file names against the BIDS schema (bidsschematools), derivative rules included."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path


@cache
def _regexes() -> tuple[str, ...]:
    from bidsschematools import rules, schema

    sc = schema.load_schema()
    out = []
    for group in (sc.rules.files.common, sc.rules.files.raw, sc.rules.files.deriv):
        out += [r['regex'] for r in rules.regexify_filename_rules(group, sc, level=2)]
    return tuple(out)


def is_valid_name(relpath: str) -> bool:
    """Whether ``relpath`` (relative to a derivative dataset root) matches a schema rule."""
    return any(re.fullmatch(r'(?:.*/)?' + rx, relpath) for rx in _regexes())


def invalid_files(root: Path) -> list[str]:
    """Files under ``root`` that match no schema rule and are not in its ``.bidsignore``.

    Uses bidsschematools' own file walker, which honours ``.bidsignore`` and skips dot files.
    """
    from bidsschematools import validator

    root = Path(root).resolve()
    desc = json.loads((root / 'dataset_description.json').read_text())
    assert desc['DatasetType'] == 'derivative'
    paths = validator._get_paths([str(root)])
    return sorted(
        rel
        for rel in (Path(p).relative_to(root).as_posix() for p in paths)
        if not is_valid_name(rel)
    )
