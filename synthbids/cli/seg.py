"""``synthbids-seg``: whole-brain segmentation with FreeSurfer ``mri_synthseg``'s flags.

``--i`` is an image, a folder of images or a ``.txt`` file listing images; outputs follow
``mri_synthseg``'s rules: for an image, ``--o`` is a file or a folder; for a folder, folders
(``<name>_synthseg.nii.gz``, ``_posteriors``, ``_resampled``) and one CSV for every subject;
for a text file, text files listing one output per input. The networks are loaded once.
A bad image among several is reported and skipped; the exit status is then non-zero.
Also ``mri_synthseg``'s later flags: ``--photo`` (Photo-SynthSeg), ``--autocrop`` and
``--addctab`` (a FreeSurfer colour table embedded in ``.mgz`` segmentations).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ._common import add_common_flags, print_weights, run_each, set_threads, tool_main

PROG = 'synthbids-seg'
log = logging.getLogger('synthbids.seg')

IMAGE_SUFFIXES = ('.nii.gz', '.nii', '.mgz', '.mgh')


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description='Segmentation of brain MRI and CT scans of any contrast and resolution '
        '(SynthSeg in PyTorch). Accepts the flags of FreeSurfer mri_synthseg.',
        epilog='Weights are searched in this order: --model, $SYNTHBIDS_MODELS, the user '
        'cache (synthbids-models fetch), $FREESURFER_HOME/models, then the weights packaged '
        'with synthbids.',
    )
    required = p.add_argument_group('required arguments')
    required.add_argument(
        '--i',
        metavar='PATH',
        required=True,
        help='image, folder of images, or .txt list of images',
    )
    required.add_argument(
        '--o', metavar='PATH', required=True, help='segmentation(s): file or folder (as --i)'
    )
    p.add_argument('--parc', action='store_true', help='cortical parcellation (Desikan-Killiany)')
    p.add_argument('--robust', action='store_true', help='robust model (slower; implies --fast)')
    p.add_argument('--fast', action='store_true', help='no flip test-time augmentation')
    p.add_argument('--ct', action='store_true', help='clip CT scans to [0, 80] Hounsfield units')
    p.add_argument('--vol', metavar='CSV', help='volumes of all structures and subjects')
    p.add_argument('--qc', metavar='CSV', help='automated quality-control scores')
    p.add_argument('--post', metavar='PATH', help='posteriors (file or folder, as --o)')
    p.add_argument(
        '--resample', metavar='PATH', help='image resampled to 1 mm (written if resampled)'
    )
    p.add_argument(
        '--crop',
        nargs='+',
        type=int,
        metavar='N',
        help='only analyse a centred patch of this size (1 or 3 values, rounded up to 32)',
    )
    p.add_argument(
        '--autocrop',
        action='store_true',
        help='only analyse the box around the non-background voxels (not with --crop)',
    )
    p.add_argument(
        '--photo',
        metavar='left|right|both',
        help='Photo-SynthSeg: a 3-D reconstructed stack of coronal dissection photographs of '
        'one cerebral hemisphere or both (not with --robust, --v1, --ct, --qc)',
    )
    p.add_argument(
        '--addctab',
        action='store_true',
        help="embed FreeSurfer's colour lookup table in .mgz/.mgh segmentations",
    )
    p.add_argument(
        '--threads', type=int, metavar='N', help='number of CPU threads (default: all cores)'
    )
    p.add_argument('--cpu', action='store_true', help='run on the CPU even if a GPU is present')
    p.add_argument(
        '--refine',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='refine the posteriors with per-label intensity models fitted to the image '
        "(default: the weights' own setting: on for synthbids' packaged weights, off for the "
        'official ones)',
    )
    p.add_argument('--v1', action='store_true', help='SynthSeg 1.0 (no CSF label)')
    p.add_argument(
        '--keepgeom', action='store_true', help='write the segmentation on the input grid'
    )
    p.add_argument(
        '--model', metavar='PATH', help='weights file, or a folder holding the official files'
    )
    p.add_argument(
        '--parc-compat',
        action='store_true',
        help='scale parcel volumes as mri_synthseg up to FreeSurfer 7.4 did (to the cerebral '
        'white matter for 2.0) instead of per hemisphere to the cortex',
    )
    p.add_argument(
        '--low-memory',
        action='store_true',
        help='recompute full-resolution features instead of keeping them: about 20%% slower, '
        '~20%% less peak memory',
    )
    add_common_flags(p, PROG)
    return p


def main(argv: list[str] | None = None) -> int:
    return tool_main(PROG, get_parser(), _run, argv)


# --------------------------------------------------------------------------- paths


@dataclass
class Plan:
    """Inputs and where each output of each input goes (``None``: not requested)."""

    inputs: list[Path]
    seg: list[Path]
    post: list[Path | None]
    resample: list[Path | None]
    vol: list[Path | None]
    qc: list[Path | None]
    shared_tables: bool  # one CSV for every subject (image or folder input)
    folders: list[Path] = field(default_factory=list)  # to create before writing


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _suffixed(src: Path, suffix: str) -> str:
    name = src.name
    if '.nii' in name:
        return name.replace('.nii', f'_{suffix}.nii', 1)
    for ext in ('.mgz', '.mgh'):
        if name.endswith(ext):
            return name[: -len(ext)] + f'_{suffix}{ext}'
    return f'{name}_{suffix}.nii.gz'


def _read_list(path: Path, what: str) -> list[Path]:
    from ..core.errors import InputError

    if not path.is_file():
        raise InputError(path, f'no such {what} list')
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [Path(ln) for ln in lines if ln]


def _csv_path(value: str) -> Path:
    return Path(value if value.endswith('.csv') else value + '.csv')


#: File name suffix of each per-image output written into a folder.
_SUFFIX = {'--o': 'synthseg', '--post': 'posteriors', '--resample': 'resampled'}


def plan_outputs(args) -> Plan:
    """``mri_synthseg``'s rules for matching outputs to inputs (module docstring)."""
    from ..core.errors import UsageError

    if not args.i:
        raise UsageError('please give an input image, folder or list with --i')
    if not args.o:
        raise UsageError('please give an output file or folder with --o')
    source = Path(args.i)
    image_outputs = {'--o': args.o, '--post': args.post, '--resample': args.resample}
    if source.name.endswith('.txt'):
        return _plan_from_list(source, image_outputs, args)
    for option, value in {**image_outputs, '--vol': args.vol, '--qc': args.qc}.items():
        if value is not None and value.endswith('.txt'):
            raise UsageError(f'{option} can only be a .txt list when --i is one')
    inputs = [source] if _is_image(source.name) else _images_in(source)
    folders, outs = [], {}
    for option, value in image_outputs.items():
        if value is None:
            outs[option] = [None] * len(inputs)
        elif _is_image(value):
            if len(inputs) > 1 or not _is_image(source.name):
                raise UsageError(f'{option} must be a folder when --i is a folder')
            outs[option] = [Path(value)]
        else:
            folders.append(Path(value))
            outs[option] = [Path(value) / _suffixed(src, _SUFFIX[option]) for src in inputs]
    vol = _csv_path(args.vol) if args.vol else None
    qc = _csv_path(args.qc) if args.qc else None
    return Plan(
        inputs,
        outs['--o'],
        outs['--post'],
        outs['--resample'],
        [vol] * len(inputs),
        [qc] * len(inputs),
        shared_tables=True,
        folders=folders,
    )


def _images_in(source: Path) -> list[Path]:
    """The images of an input folder, sorted (``--i`` is neither an image nor a list)."""
    from ..core.errors import InputError

    if source.is_file():
        raise InputError(
            source, 'unsupported file type: expected an image, a folder or a .txt list'
        )
    if not source.is_dir():
        raise InputError(source, 'no such file or folder')
    inputs = sorted(p for p in source.iterdir() if p.is_file() and _is_image(p.name))
    if not inputs:
        raise InputError(source, 'no .nii, .nii.gz, .mgz or .mgh image in this folder')
    return inputs


def _plan_from_list(source: Path, image_outputs: dict, args) -> Plan:
    """``--i`` is a text file of images: every output option is a text file of as many."""
    from ..core.errors import InputError, UsageError

    inputs = _read_list(source, 'input')
    if not inputs:
        raise InputError(source, 'the list of inputs is empty')

    def listed(option, value):
        if value is None:
            return [None] * len(inputs)
        if not value.endswith('.txt'):
            raise UsageError(f'{option} must be a .txt list of paths when --i is one')
        paths = _read_list(Path(value), f'{option} output')
        if len(paths) != len(inputs):
            raise UsageError(
                f'{option} lists {len(paths)} paths for {len(inputs)} inputs ({value})'
            )
        return paths

    outs = {k: listed(k, v) for k, v in image_outputs.items()}
    return Plan(
        inputs,
        outs['--o'],
        outs['--post'],
        outs['--resample'],
        listed('--vol', args.vol),
        listed('--qc', args.qc),
        shared_tables=False,
    )


def _prepare_folders(plan: Plan) -> None:
    """Create output folders (as ``mri_synthseg`` does) and check every output early."""
    from ..core.errors import OutputError
    from ..core.imageio import check_output_path
    from ._common import check_distinct

    every = [p for p in plan.seg + plan.post + plan.resample if p is not None]
    tables = {p for p in plan.vol + plan.qc if p is not None}
    for folder in set(plan.folders) | {p.parent for p in every} | {p.parent for p in tables}:
        if str(folder) in ('', '.'):
            continue
        if folder.exists() and not folder.is_dir():
            raise OutputError(folder, 'is a file, not a folder')
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(folder, f'cannot create the folder: {err.strerror}') from None
    for p in every:
        check_output_path(p)
    for p in tables:
        if p.is_dir():
            raise OutputError(p, 'is a folder, not a file name')
    check_distinct(plan.inputs, every + sorted(tables))


# --------------------------------------------------------------------------- run


def _run(args) -> int:
    from ..core import seg_photo as photo
    from ..core.errors import InputError, UsageError
    from ..core.seg_preprocess import parse_crop

    if args.photo is not None:
        photo.check_options(
            args.photo, robust=args.robust, v1=args.v1, ct=args.ct, qc=args.qc is not None
        )
    if args.robust and args.v1:
        raise UsageError('--v1 cannot be used with --robust (the robust model is 2.0 only)')
    if args.autocrop and args.crop is not None:
        raise UsageError('--autocrop cannot be used with --crop')
    try:
        options = dict(
            fast=args.fast,
            crop=parse_crop(args.crop),
            autocrop=args.autocrop,
            ct=args.ct,
            keepgeom=args.keepgeom,
            parc_compat=args.parc_compat,
            refine=args.refine,
        )
    except InputError as err:
        raise UsageError(str(err)) from None
    plan = plan_outputs(args)
    _prepare_folders(plan)
    set_threads(args.threads)
    device = _device(args.cpu)

    from ..core import seg_tables as T
    from ..core.imageio import load_volume
    from ..core.seg_ctab import default_table, is_mgh
    from ..core.segment import load_seg_model, segment_file

    if args.addctab and not all(is_mgh(p) for p in plan.seg):
        log.warning('--addctab: NIfTI segmentations carry no colour table; only .mgz/.mgh do')
    if args.photo is not None:
        print(f'{photo.VERSION} (--photo {args.photo})', flush=True)
    model = ctab = None
    tables: dict[Path, list] = {}

    def work(i, src):
        nonlocal model, ctab
        volume = load_volume(src, max_dims=5, fdata=True)  # bad input fails fast
        if model is None:
            model = load_seg_model(
                args.model,
                v1=args.v1,
                robust=args.robust,
                parc=args.parc,
                qc=plan.qc[0] is not None,
                device=device,
                low_memory=args.low_memory,
                photo=args.photo,
            )
            print_weights(model.weights, device)
            if model.refine if args.refine is None else args.refine:
                print('posteriors refined by the image intensities (--no-refine: off)', flush=True)
            if args.addctab:
                ctab = default_table(dict(zip(model.labels, model.names)))
        seg, post, resampled = plan.seg[i], plan.post[i], plan.resample[i]
        result, _ = segment_file(
            volume,
            model,
            seg,
            posteriors=post,
            resampled=resampled,
            ctab=ctab if is_mgh(seg) else None,
            **options,
        )
        written = [seg, post, resampled if result.resampled is not None else None]
        subject = T.subject_name(src)
        if plan.vol[i] is not None:
            row = T.volume_row(subject, result.volumes, result.volume_precision)
            written.append(_add_row(tables, plan.vol[i], list(result.volumes), row, plan))
        if plan.qc[i] is not None:
            row = T.qc_row(subject, result.qc)
            written.append(_add_row(tables, plan.qc[i], list(result.qc), row, plan))
        return [p for p in written if p is not None]

    return run_each(PROG, plan.inputs, work)


def _add_row(store: dict, path: Path, header: list[str], row: list[str], plan: Plan) -> Path:
    """Add a subject's row to its table and rewrite the table atomically."""
    from ..core import seg_tables as T

    rows = store.setdefault(path, [])
    rows.append(row)
    T.write_table(path, T.table(header, rows, shared=plan.shared_tables))
    return path


def _device(cpu: bool):
    import torch

    if not cpu and torch.cuda.is_available():
        return torch.device('cuda')
    return torch.device('cpu')


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
