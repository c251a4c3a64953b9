"""Template registration of Colin27: whole-process time and peak RSS, against the
segmentation of the same image in the same job (what registration adds to a participant run).

    python benchmarks/template_benchmark.py [--repeats 3] [--threads 2]

Colin27 (Debian's mricron-data) deformed by a known random affine + warp is segmented once
(packaged weights, tissue maps saved); then, alternately, (a) ``synthbids-seg`` on the deformed
image and (b) one process that loads the tissue maps of the image and of the template,
registers them (:func:`synthbids.core.register.register`), writes both ITK transforms and
resamples the mask and tissue maps onto the template grid. The boundary error of each
registration is printed. Results: ``benchmarks/results/template-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from measure import measure  # noqa: E402

CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')

PREPARE = """
import sys, numpy as np, nibabel as nib
from synthbids.core.segment import load_seg_model, segment
from synthbids.core.geometry import Grid
from synthbids.core.tissues import on_grid
from tests.registration_cases import KnownWarp
out = sys.argv[1]
t1 = nib.load(sys.argv[2]); A = t1.affine; image = t1.get_fdata().astype(np.float32)
known = KnownWarp(image.shape, A, seed=0)
nib.save(nib.Nifti1Image(known.pull(image, A), A), out + '/moved.nii.gz')
model = load_seg_model(warn=False)
for name, path in (('template', sys.argv[2]), ('moved', out + '/moved.nii.gz')):
    r = segment(path, model, tissues=True)
    maps = on_grid(r.tissues, Grid(r.tissues.shape[:3], r.posteriors_affine), Grid(t1.shape, A))
    nib.save(nib.Nifti1Image(maps, A), f'{out}/{name}_tissues.nii.gz')
"""

REGISTER = """
import sys, time, torch, numpy as np, nibabel as nib
torch.set_num_threads(int(sys.argv[2]))
from synthbids.core import register as R
from synthbids.core import register_apply as A
from synthbids.core.xfm_itk import write_itk_h5
from tests.registration_cases import KnownWarp, boundary_points, mapping_error
out = sys.argv[1]
mov = nib.load(out + '/moved_tissues.nii.gz'); fix = nib.load(out + '/template_tissues.nii.gz')
m, f = mov.get_fdata(dtype=np.float32), fix.get_fdata(dtype=np.float32)
t = time.perf_counter()
reg = R.register(m, mov.affine, f, fix.affine)
write_itk_h5(out + '/fwd.h5', A.forward_steps(reg))
write_itk_h5(out + '/inv.h5', A.inverse_steps(reg))
std = A.to_template(m, mov.affine, reg, fix.shape[:3], fix.affine)
seconds = time.perf_counter() - t
known = KnownWarp(fix.shape[:3], fix.affine, seed=0)
err = mapping_error(known, reg.template_to_subject, boundary_points(f, fix.affine)).mean()
open(out + '/register.txt', 'w').write(f'{seconds:.2f} {err:.3f}')
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args(argv)
    if not CH2.is_file():
        sys.exit(f'{CH2}: not found (apt-get install mricron-data)')
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(HERE.parent))
    py = sys.executable
    seg = str(Path(py).with_name('synthbids-seg'))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([py, '-c', PREPARE, tmp, str(CH2)], env=env, check=True)
        for _ in range(args.repeats):
            ref = measure(
                [seg, '-i', f'{tmp}/moved.nii.gz', '-o', f'{tmp}/seg.nii.gz', '--threads',
                 str(args.threads), '--cpu'],
                env,
            )  # fmt: skip
            reg = measure([py, '-c', REGISTER, tmp, str(args.threads)], env)
            out = Path(tmp, 'register.txt').read_text().split()
            rows.append(
                {
                    'seg': ref,
                    'register': reg,
                    'register_inner_s': float(out[0]),
                    'boundary_error_mm': float(out[1]),
                }  # fmt: skip
            )
            print(json.dumps(rows[-1]))
    wall = sorted(r['register']['wall_s'] / r['seg']['wall_s'] for r in rows)
    rss = sorted(r['register']['peak_rss_gb'] / r['seg']['peak_rss_gb'] for r in rows)
    summary = {
        'register_wall_s': sorted(r['register']['wall_s'] for r in rows),
        'seg_wall_s': sorted(r['seg']['wall_s'] for r in rows),
        'wall_ratio_median': wall[len(wall) // 2],
        'rss_ratio_median': rss[len(rss) // 2],
        'threads': args.threads,
    }
    print(json.dumps(summary, indent=1))
    results = HERE / 'results'
    results.mkdir(exist_ok=True)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    (results / f'template-{stamp}.json').write_text(json.dumps({'runs': rows, **summary}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
