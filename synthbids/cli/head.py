"""``synthbids-head``: head tissues (brain, CSF, bone, skin, eyes, other soft tissue) and
closed surface meshes of the head from any head image.

Any number of images can be given to ``-i``; the model is loaded once. ``-o`` and
``--posteriors`` take one file per input, or (with several inputs) one existing folder;
``--mesh`` takes one folder per input; ``--vol`` is one CSV with a row per input. A bad image
among several is reported and skipped; the exit status is then non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._common import (
    add_common_flags,
    check_distinct,
    check_inputs_exist,
    choose_device,
    expand_outputs,
    print_weights,
    run_each,
    set_threads,
    tool_main,
)

PROG = 'synthbids-head'
log = logging.getLogger('synthbids.head')


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description='Head tissues from any head image (MRI of any contrast, CT): labels 0 '
        'background, 1 brain, 2 CSF, 3 bone, 4 skin, 5 eyes, 6 other soft tissue, their '
        'volumes, and closed surface meshes of the scalp, the skull and the brain.',
        epilog='Weights are searched in this order: --model, $SYNTHBIDS_MODELS, the user '
        'cache (synthbids-models fetch), $FREESURFER_HOME/models, then the weights packaged '
        'with synthbids. See docs/head.md.',
    )
    p.add_argument(
        '-i',
        '--input',
        metavar='IMG',
        nargs='+',
        required=True,
        help='input head image(s) (NIfTI or MGZ, 3-D)',
    )
    p.add_argument(
        '-o',
        '--output',
        metavar='LABELS',
        nargs='+',
        help='save the head-tissue labels, int32 on the input grid (one per input, or a folder)',
    )
    p.add_argument(
        '--posteriors',
        metavar='FILE',
        nargs='+',
        help='save the class probabilities, 7 frames (one per input, or a folder)',
    )
    p.add_argument(
        '--mesh',
        metavar='DIR',
        nargs='+',
        help='save closed surface meshes (scalp, outerskull, innerskull, brain; GIfTI and STL, '
        'scanner coordinates in mm) in this folder (one per input; created if missing)',
    )
    p.add_argument(
        '--vol', metavar='CSV', help='save the volume (mL) of every class, one row per input'
    )
    p.add_argument('--model', metavar='FILE', help='weights file to use instead of the search')
    p.add_argument('-g', '--gpu', action='store_true', help='use the GPU')
    p.add_argument(
        '-t',
        '--threads',
        dest='threads',
        type=int,
        metavar='N',
        help='number of CPU threads (default: all cores)',
    )
    add_common_flags(p, PROG)
    return p


def main(argv: list[str] | None = None) -> int:
    return tool_main(PROG, get_parser(), _run, argv)


def _csv_path(value: str) -> Path:
    return Path(value if value.lower().endswith('.csv') else value + '.csv')


def _run(args) -> int:
    from ..core.errors import OutputError, UsageError
    from ..core.head_meshes import check_mesh_dir
    from ..core.imageio import check_extension, check_output_path

    if not (args.output or args.posteriors or args.mesh or args.vol):
        raise UsageError('give at least one output: -o/--output, --posteriors, --mesh or --vol')
    inputs = [Path(p) for p in args.input]
    if args.mesh and len(args.mesh) != len(inputs):
        raise UsageError(f'--mesh needs one folder per input ({len(inputs)})')
    check_inputs_exist(inputs)
    for p in inputs:
        check_extension(p)
    labels = expand_outputs('-o/--output', args.output, inputs, '_head')
    posteriors = expand_outputs('--posteriors', args.posteriors, inputs, '_head_posteriors')
    meshes = [Path(d) for d in args.mesh] if args.mesh else [None] * len(inputs)
    vol = _csv_path(args.vol) if args.vol else None
    images = [p for p in labels + posteriors if p is not None]
    for p in images:
        check_output_path(p)
    folders = [d for d in meshes if d is not None]
    for d in folders:
        check_mesh_dir(d)
    if vol is not None and vol.is_dir():
        raise OutputError(vol, 'is a folder, not a file name')
    check_distinct(inputs, images + folders + ([vol] if vol else []))

    set_threads(args.threads)
    device = choose_device(args.gpu)

    from ..core import labels as L
    from ..core import seg_tables as T
    from ..core.head import head_file, load_head_model
    from ..core.imageio import load_volume, require_head_size, require_signal

    model = None
    rows: list[list[str]] = []
    header = list(L.HEAD_CLASSES[1:])

    def work(i, src):
        nonlocal model
        volume = load_volume(src, max_dims=3)  # before the model: bad input fails fast
        require_signal(volume)
        require_head_size(volume)
        if model is None:
            model = load_head_model(args.model, device=device)
            print_weights([model.weights], device)
        out, post, mesh_dir = labels[i], posteriors[i], meshes[i]
        result, _ = head_file(volume, model, out, posteriors=post, mesh_dir=mesh_dir)
        written = [out, post, mesh_dir]
        if vol is not None:
            volumes = {name: result.volumes[name] for name in header}
            rows.append(T.volume_row(T.subject_name(src), volumes))
            T.write_table(vol, T.table(header, rows))
            written.append(vol)
        return [p for p in written if p is not None]

    return run_each(PROG, inputs, work)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
