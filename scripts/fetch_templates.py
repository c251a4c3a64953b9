"""Fetch TemplateFlow templates for ``synthbids --output-spaces`` into ``$TEMPLATEFLOW_HOME``
(on a machine with network: a login node, or a container build).

    python scripts/fetch_templates.py MNI152NLin2009cAsym:res-2 MNIColin27
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from synthbids.bids.templates import prefetch, resolve_templates
    from synthbids.core.errors import SynthbidsError

    spaces = sys.argv[1:] if argv is None else argv
    if not spaces or spaces[0] in ('-h', '--help'):
        print(__doc__.strip())
        return 0 if spaces else 64
    try:
        for path in prefetch(spaces):
            print(path)
        for files in resolve_templates(spaces):  # everything a run will look for is there
            print(f'{files.space.fullname}: {files.image.parent}')
    except SynthbidsError as err:
        print(f'fetch_templates: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
