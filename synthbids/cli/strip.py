"""``synthbids-strip``: skull stripping with FreeSurfer ``mri_synthstrip``'s flags.

Any number of images can be given to ``-i``; the model is loaded once. Output options take
one file per input, or (with several inputs) one existing folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .. import __version__
from ._common import (
    check_distinct,
    check_inputs_exist,
    choose_device,
    expand_outputs,
    run_main,
    set_threads,
    setup_logging,
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
    p.add_argument(
        '-v', '--verbose', action='count', default=0, help='more messages (-vv: debugging)'
    )
    p.add_argument('--version', action='version', version=f'{PROG} {__version__}')
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_main(PROG, lambda: _run(args), verbose=args.verbose > 1)


def _run(args) -> int:
    from ..core.errors import InputError, SynthbidsError
    from ..core.imageio import OutputSet, check_extension, check_output_path, image_like

    if not (args.out or args.mask or args.sdt):
        raise SynthbidsError('give at least one output: -o/--out, -m/--mask or -d/--sdt')
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

    from ..core.imageio import load_volume
    from ..core.strip import load_strip_model, strip

    model = None
    failures = 0
    for src, out, mask, sdt in zip(inputs, outs, masks, sdts):
        start = time.perf_counter()
        try:
            volume = load_volume(src)  # before the model: bad input fails fast
            if model is None:
                model = load_strip_model(args.model, no_csf=args.no_csf, device=device)
                weights = model.weights
                print(
                    f'Using {weights.name} (sha256 {weights.sha256[:12]}...) on {device}',
                    flush=True,
                )
            result = strip(volume, model, border=args.border, fill=args.fill)
            with OutputSet() as staged:
                if out is not None:
                    staged.add(image_like(result.stripped, volume, out), out)
                if mask is not None:
                    staged.add(image_like(result.mask.astype('uint8'), volume, mask), mask)
                if sdt is not None:
                    staged.add(image_like(result.sdt, volume, sdt), sdt)
        except InputError as err:
            if len(inputs) == 1:
                raise
            failures += 1
            print(f'{PROG}: error: {err}', file=sys.stderr, flush=True)
            continue
        written = ', '.join(str(p) for p in (out, mask, sdt) if p is not None)
        print(f'{src}: done in {time.perf_counter() - start:.1f} s -> {written}', flush=True)
    if failures:
        print(f'{PROG}: {failures} of {len(inputs)} images failed', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
