"""``synthbids-models``: list, fetch, verify and locate model weights.

``fetch`` is the only command in synthbids that uses the network. It resumes interrupted
downloads, checks size and SHA-256, and publishes the file atomically into the user cache
(``$SYNTHBIDS_CACHE`` or ``~/.cache/synthbids/models``), so that later runs (also on offline
compute nodes sharing that folder) find it.

Some weights need small companion files beside them (Photo-SynthSeg's ``.npy`` label lists,
which have no download address of their own): ``list``, ``fetch`` and ``verify`` say when
they are missing.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .. import fetch as F
from ..core import weights as W
from ..core.errors import SynthbidsError, WeightsError
from ._common import run_main, setup_logging

PROG = 'synthbids-models'


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description='Manage synthbids model weights.')
    p.add_argument('--version', action='version', version=f'{PROG} {__version__}')
    p.add_argument('-v', '--verbose', action='count', default=0)
    sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')
    sub.add_parser('list', help='known weights and where they are found')
    f = sub.add_parser('fetch', help='download official weights into the user cache')
    f.add_argument('names', nargs='+', metavar='NAME', help='registry names (see "list")')
    f.add_argument(
        '--mirror',
        metavar='URL_OR_DIR',
        help='take the files from this base URL or folder instead',
    )
    f.add_argument('--force', action='store_true', help='download again even if present')
    f.add_argument('--dest', metavar='DIR', help='folder to store into (default: user cache)')
    v = sub.add_parser('verify', help='check size and SHA-256 of every weights file found')
    v.add_argument('names', nargs='*', metavar='NAME', help='only these (default: all)')
    pa = sub.add_parser('path', help='print the file that would be used for NAME')
    pa.add_argument('name', metavar='NAME')
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_main(PROG, lambda: COMMANDS[args.command](args), verbose=args.verbose > 1)


def _entries(names) -> list[W.RegistryEntry]:
    reg = W.registry()
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise SynthbidsError(
            f'unknown weights name(s): {", ".join(unknown)} (known: {", ".join(reg)})'
        )
    return [reg[n] for n in names]


def cmd_list(args) -> int:
    rows = []
    for entry in W.registry().values():
        found = F.locate(entry)
        where = f'{found[0][0]}: {found[0][1]}' if found else '-'
        if found and entry.missing_companions(found[0][1]):
            where += f' (missing beside it: {", ".join(entry.missing_companions(found[0][1]))})'
        size = f'{entry.bytes / 1e6:.1f} MB' if entry.bytes else ''
        rows.append((entry.name, entry.kind, entry.file, size, where))
    widths = [
        max(len(r[i]) for r in rows + [('NAME', 'KIND', 'FILE', 'SIZE', '')]) for i in range(4)
    ]
    print(
        '  '.join(h.ljust(w) for h, w in zip(('NAME', 'KIND', 'FILE', 'SIZE'), widths)) + '  FOUND'
    )
    for r in rows:
        print('  '.join(c.ljust(w) for c, w in zip(r[:4], widths)) + '  ' + r[4])
    print(f'\nuser cache: {W.cache_dir()}')
    return 0


def cmd_fetch(args) -> int:
    failed = 0
    for entry in _entries(args.names):
        if entry.packaged:
            print(f'{entry.name}: packaged with synthbids, nothing to fetch')
            continue
        try:
            path = F.fetch(
                entry,
                dest=args.dest,
                mirror=args.mirror,
                force=args.force,
                progress=_progress(entry.name),
            )
        except WeightsError as err:
            print(f'\n{PROG}: error: {err}', file=sys.stderr)
            failed += 1
            continue
        print(f'\r{entry.name}: {path} (verified)'.ljust(70))
        _say_missing_companions(entry, path)
    return 1 if failed else 0


def _say_missing_companions(entry: W.RegistryEntry, path) -> bool:
    """Print which companion files ``path`` still needs beside it; True if any."""
    missing = entry.missing_companions(path)
    if missing:
        print(
            f'{entry.name}: also needs {", ".join(missing)} beside {path} (copy them from the '
            'models folder of FreeSurfer, which has no separate download for them)'
        )
    return bool(missing)


def _progress(name):
    state = {'last': -1}

    def show(done, total):
        if not sys.stdout.isatty():
            return
        pct = int(100 * done / total) if total else -1
        if pct != state['last']:
            state['last'] = pct
            text = f'{pct}%' if pct >= 0 else f'{done / 1e6:.1f} MB'
            print(f'\r{name}: {text}', end='', flush=True)

    return show


def cmd_verify(args) -> int:
    entries = _entries(args.names) if args.names else list(W.registry().values())
    bad = checked = 0
    for entry in entries:
        for source, path in F.locate(entry):
            ok, message = F.verify_file(entry, path)
            checked += 1
            bad += not ok
            print(f'{"OK " if ok else "BAD"} {entry.name} ({source}) {path}: {message}')
            bad += _say_missing_companions(entry, path)
        if args.names and not F.locate(entry):
            print(f'--- {entry.name}: not found')
            bad += 1
    if not checked and not args.names:
        print('no weights files found')
    return 1 if bad else 0


def cmd_path(args) -> int:
    (entry,) = _entries([args.name])
    found = F.locate(entry)
    if not found:
        raise WeightsError(f'{entry.name} ({entry.file}) is not present in any search location')
    print(found[0][1])
    return 0


COMMANDS = {'list': cmd_list, 'fetch': cmd_fetch, 'verify': cmd_verify, 'path': cmd_path}

if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
