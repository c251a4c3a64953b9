#!/usr/bin/env python
"""Vendor (or check) the NiiVue bundle of the report viewer (developer tool; needs npm).

The participant reports' interactive viewer runs NiiVue (npm ``@niivue/niivue``, BSD-2-Clause),
shipped unmodified inside the package as ``synthbids/data/viewer/niivue.umd.js`` so that a report
opened from disk never reaches a CDN. This script downloads the npm tarball of one version with
``npm pack`` (which verifies the registry's SHA-512 integrity), takes its prebuilt UMD bundle
``dist/niivue.umd.js``, checks the licence of NiiVue and of every package bundled into it
(installed with ``npm install --omit=dev --omit=optional --ignore-scripts``), and records the
version, the tarball's integrity and the bundle's SHA-256 in ``niivue.json``, with the licence
texts in ``LICENSE.txt``.

    python scripts/vendor_niivue.py --check            # the vendored file is the pinned release
    python scripts/vendor_niivue.py --version 0.69.0   # vendor another release (then review)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VIEWER = Path(__file__).resolve().parents[1] / 'synthbids' / 'data' / 'viewer'
PACKAGE = '@niivue/niivue'
BUNDLE = 'package/dist/niivue.umd.js'
#: Licences allowed in the bundle (permissive; each one's text is shipped in LICENSE.txt).
ALLOWED = {'BSD-2-Clause', 'BSD-3-Clause', 'MIT', 'ISC', 'Apache-2.0', 'Zlib', '0BSD'}
#: NiiVue's licence (its GitHub repository's LICENSE; the npm tarball has none).
NIIVUE_LICENSE = """BSD 2-Clause License

Copyright (c) 2021, Niivue
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def npm(*args: str, cwd: Path) -> str:
    npm_path = shutil.which('npm')
    if npm_path is None:
        sys.exit('vendor_niivue: npm not found')
    proc = subprocess.run(  # noqa: S603 - fixed arguments
        [npm_path, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode:
        sys.exit(f'vendor_niivue: npm {" ".join(args)} failed:\n{proc.stderr[-2000:]}')
    return proc.stdout


def fetch(version: str, work: Path) -> dict:
    """The npm tarball of ``version`` unpacked under ``work``; its pack metadata."""
    (info,) = json.loads(npm('pack', f'{PACKAGE}@{version}', '--json', cwd=work))
    with tarfile.open(work / info['filename']) as tar:
        tar.extractall(work, filter='data')
    meta = json.loads((work / 'package' / 'package.json').read_text())
    if meta.get('license') != 'BSD-2-Clause':
        sys.exit(f'vendor_niivue: {PACKAGE} {version} is licensed {meta.get("license")!r}')
    return info


def bundled_licences(version: str, work: Path) -> dict[str, dict]:
    """``{name: {version, license, text}}`` of every runtime dependency of NiiVue."""
    project = work / 'deps'
    project.mkdir()
    (project / 'package.json').write_text('{"name": "deps", "private": true}')
    npm(
        'install',
        f'{PACKAGE}@{version}',
        '--omit=dev',
        '--omit=optional',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        cwd=project,
    )
    lock = json.loads((project / 'package-lock.json').read_text())
    out = {}
    for key, entry in sorted(lock['packages'].items()):
        if not key or entry.get('optional') or entry.get('dev'):
            continue
        name = key.rsplit('node_modules/', 1)[1]
        if name == PACKAGE:
            continue
        folder = project / key
        licence = entry.get('license') or json.loads((folder / 'package.json').read_text()).get(
            'license'
        )
        if licence not in ALLOWED:
            sys.exit(f'vendor_niivue: {name} {entry.get("version")} is licensed {licence!r}')
        files = sorted(
            p for p in folder.iterdir() if p.name.lower().startswith(('licen', 'copying'))
        )
        if not files:
            sys.exit(f'vendor_niivue: {name} ships no licence file')
        out[name] = {
            'version': entry['version'],
            'license': licence,
            'text': files[0].read_text(errors='replace').strip(),
        }
    return out


def licence_text(version: str, deps: dict[str, dict]) -> str:
    parts = [
        f'NiiVue {version} (npm {PACKAGE}, https://github.com/niivue/niivue)\n',
        NIIVUE_LICENSE,
    ]
    parts.append('\nThe bundle includes the following packages, under these licences.\n')
    for name, dep in deps.items():
        parts.append(
            f'\n----- {name} {dep["version"]} ({dep["license"]}) -----\n\n{dep["text"]}\n'
        )
    return ''.join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--version', help='NiiVue release to vendor (default: the pinned one)')
    p.add_argument('--check', action='store_true', help='only check the vendored bundle')
    args = p.parse_args(argv)
    manifest_path = VIEWER / 'niivue.json'
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    version = args.version or manifest.get('version')
    if not version:
        p.error('no pinned version: give --version')
    with tempfile.TemporaryDirectory(prefix='niivue-') as tmp:
        work = Path(tmp)
        info = fetch(version, work)
        bundle = work / BUNDLE
        digest = sha256(bundle)
        if args.check:
            problems = []
            if (
                manifest.get('version') != version
                or manifest.get('integrity') != info['integrity']
            ):
                problems.append('the npm tarball is not the one recorded in niivue.json')
            if manifest.get('sha256') != digest:
                problems.append(
                    f'npm bundle SHA-256 {digest} != recorded {manifest.get("sha256")}'
                )
            vendored = VIEWER / manifest.get('file', 'niivue.umd.js')
            if not vendored.is_file() or sha256(vendored) != digest:
                problems.append(f'{vendored} differs from the npm release')
            for problem in problems:
                print(f'vendor_niivue: {problem}', file=sys.stderr)
            if not problems:
                print(f'vendor_niivue: {vendored.name} is {PACKAGE} {version} ({digest})')
            return 1 if problems else 0
        deps = bundled_licences(version, work)
        VIEWER.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, VIEWER / 'niivue.umd.js')
        (VIEWER / 'LICENSE.txt').write_text(licence_text(version, deps))
        manifest = {
            'package': PACKAGE,
            'version': version,
            'file': 'niivue.umd.js',
            'source': f'{BUNDLE[len("package/") :]} of the npm tarball',
            'tarball': f'https://registry.npmjs.org/{PACKAGE}/-/niivue-{version}.tgz',
            'integrity': info['integrity'],
            'sha256': digest,
            'bytes': bundle.stat().st_size,
            'license': 'BSD-2-Clause',
            'bundled': {name: f'{d["version"]} ({d["license"]})' for name, d in deps.items()},
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + '\n')
        print(f'vendor_niivue: vendored {PACKAGE} {version} ({digest}, {manifest["bytes"]} bytes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
