"""``synthbids-strip``: skull stripping with FreeSurfer ``mri_synthstrip``'s flags.

Any number of images can be given to ``-i``; the model is loaded once. Output options take
one file per input, or (with several inputs) one existing folder.
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

PROG = 'synthbids-strip'
log = logging.getLogger('synthbids.strip')


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description='Robust, universal skull-stripping for brain images of any type '
        '(SynthStrip in PyTorch). Accepts the flags of FreeSurfer mri_synthstrip.',
        epilog='Weights are searched in this order: --model, $SYNTHBIDS_MODELS, the user '
        'cache (synthbids-models fetch), $FREESURFER_HOME/models, then the weights packaged '
        'with synthbids.',
    )
    p.add_argument(
        '-i',
        '--image',
        metavar='FILE',
        nargs='+',
        required=True,
        help='input image(s) to skull-strip (NIfTI or MGZ, 3-D or 4-D)',
    )
    p.add_argument(
        '-o',
        '--out',
        metavar='FILE',
        nargs='+',
        help='save the stripped image(s) (one per input, or a folder)',
    )
    p.add_argument(
        '-m',
        '--mask',
        metavar='FILE',
        nargs='+',
        help='save the binary brain mask(s) (one per input, or a folder)',
    )
    p.add_argument(
        '-d',
        '--sdt',
        metavar='FILE',
        nargs='+',
        help='save the signed distance transform(s), mm (one per input, or a folder)',
    )
    p.add_argument('-g', '--gpu', action='store_true', help='use the GPU')
    p.add_argument(
        '-b',
        '--border',
        type=float,
        default=1.0,
        metavar='MM',
        help='mask border threshold in mm (default: 1)',
    )
    p.add_argument(
        '-t',
        '-n',
        '--threads',
        '--num-threads',
        dest='threads',
        type=int,
        metavar='N',
        help='number of CPU threads (default: all cores)',
    )
    p.add_argument(
        '-f',
        '--fill',
        type=float,
        metavar='VALUE',
        help='value for voxels outside the brain in the stripped image '
        '(default: min(0, image minimum))',
    )
    p.add_argument(
        '--no-csf', action='store_true', help='exclude extra-cerebral CSF from the brain border'
    )
    p.add_argument('--model', metavar='FILE', help='weights file to use instead of the search')
    add_common_flags(p, PROG)
    return p


def main(argv: list[str] | None = None) -> int:
    return tool_main(PROG, get_parser(), _run, argv)


def _run(args) -> int:
    from ..core.errors import UsageError
    from ..core.imageio import check_extension, check_output_path

    if not (args.out or args.mask or args.sdt):
        raise UsageError('give at least one output: -o/--out, -m/--mask or -d/--sdt')
    inputs = [Path(p) for p in args.image]
    check_inputs_exist(inputs)
    for p in inputs:
        check_extension(p)
    outs = expand_outputs('-o/--out', args.out, inputs, '_stripped')
    masks = expand_outputs('-m/--mask', args.mask, inputs, '_mask')
    sdts = expand_outputs('-d/--sdt', args.sdt, inputs, '_sdt')
    every = [p for p in outs + masks + sdts if p is not None]
    for p in every:
        check_output_path(p)
    check_distinct(inputs, every)

    set_threads(args.threads)
    device = choose_device(args.gpu)

    from ..core.imageio import load_volume, require_head_size, require_signal
    from ..core.strip import load_strip_model, strip_file

    model = None

    def work(i, src):
        nonlocal model
        volume = load_volume(src)  # before the model: bad input fails fast
        require_signal(volume)
        require_head_size(volume)
        if model is None:
            model = load_strip_model(args.model, no_csf=args.no_csf, device=device)
            print_weights([model.weights], device)
        out, mask, sdt = outs[i], masks[i], sdts[i]
        strip_file(volume, model, out=out, mask=mask, sdt=sdt, border=args.border, fill=args.fill)
        return [p for p in (out, mask, sdt) if p is not None]

    return run_each(PROG, inputs, work)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
