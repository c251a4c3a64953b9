"""SynthSeg's label sets: values, names, colours and the tables its pipeline needs.

Channel order of every SynthSeg network output is the **sorted** label list. Names are those
``mri_synthseg`` writes in its volume CSV headers; FreeSurfer names and colours (from
FreeSurfer's colour lookup table) serve BIDS ``dseg.tsv`` files and viewers.
"""

from __future__ import annotations

#: SynthSeg 2.0 segmentation labels (33, sorted); 1.0 has no 24 (CSF).
SEG_LABELS_V2 = (
    0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28,
    41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60,
)  # fmt: skip
SEG_LABELS_V1 = tuple(lab for lab in SEG_LABELS_V2 if lab != 24)

#: Desikan-Killiany regions in label order (1 = bankssts ... 35 = insula); 4 is not used.
DK_REGIONS = (
    'bankssts', 'caudalanteriorcingulate', 'caudalmiddlefrontal', 'corpuscallosum', 'cuneus',
    'entorhinal', 'fusiform', 'inferiorparietal', 'inferiortemporal', 'isthmuscingulate',
    'lateraloccipital', 'lateralorbitofrontal', 'lingual', 'medialorbitofrontal',
    'middletemporal', 'parahippocampal', 'paracentral', 'parsopercularis', 'parsorbitalis',
    'parstriangularis', 'pericalcarine', 'postcentral', 'posteriorcingulate', 'precentral',
    'precuneus', 'rostralanteriorcingulate', 'rostralmiddlefrontal', 'superiorfrontal',
    'superiorparietal', 'superiortemporal', 'supramarginal', 'frontalpole', 'temporalpole',
    'transversetemporal', 'insula',
)  # fmt: skip

#: Cortical parcellation labels (69, sorted): background and 34 regions per hemisphere.
PARC_LABELS = (0,) + tuple(base + i for base in (1000, 2000) for i in range(1, 36) if i != 4)

#: Cerebral cortex (left, right): what the parcellation replaces.
CORTEX = (3, 42)

#: Left/right label pairs swapped by the flip test-time augmentation.
LR_PAIRS = (
    (2, 41), (3, 42), (4, 43), (5, 44), (7, 46), (8, 47), (10, 49), (11, 50), (12, 51),
    (13, 52), (17, 53), (18, 54), (26, 58), (28, 60),
)  # fmt: skip

#: The other left/right labels of the training maps (25/57, 30/62, 136/163, 137/164; see
#: SPEC-synth.md §3.1), which the generator's flip swaps too.
TRAINING_LR_PAIRS = ((25, 57), (30, 62), (136, 163), (137, 164))

#: Coarse tissue of every label of the segmentations and the training maps (FreeSurfer values;
#: 5xx: the extra-cerebral labels of SimNIBS-CHARM): the generator's per-tissue contrasts and
#: CT/PET profiles, and any grey/white/CSF summary, read it from here.
TISSUES = {
    'background': (0,),
    'gm': (3, 42, 8, 47, 17, 18, 53, 54),
    'wm': (2, 41, 7, 46, 16, 28, 60, 85, 25, 57),
    'deep_gm': (10, 11, 12, 13, 26, 49, 50, 51, 52, 58),
    'csf': (4, 5, 14, 15, 24, 43, 44, 72, 136, 137, 163, 164),
    'bone': (515, 516),
    'skin': (511,),
    'soft': (508, 509, 512, 530),
    'fat': (507,),
    'eye': (506,),
    'vessel': (30, 62, 502, 514),
}


#: The head-tissue classes of ``synthbids-head`` (value = index), their BIDS-style names and
#: colours. The contract: brain = grey and white matter, deep grey, cerebellum, brainstem;
#: CSF = intracranial CSF with the ventricles (and their choroid plexus); bone = cortical +
#: cancellous skull; other soft tissue = muscle, fat, mucosa, vessels, optic nerve, cord.
HEAD_CLASSES = ('background', 'brain', 'csf', 'bone', 'skin', 'eyes', 'other soft tissue')
HEAD_NAMES = ('Background', 'Brain', 'CSF', 'Bone', 'Skin', 'Eyes', 'Soft')
HEAD_COLORS = ('#000000', '#e8c9a0', '#3c78d8', '#ffe119', '#f58231', '#3cb44b', '#911eb4')


def head_class(label: int) -> int:
    """The head-tissue class (index into :data:`HEAD_CLASSES`) of a training-map label."""
    kind = tissue(label)
    if label == 0:
        return 0
    if kind == 'csf':
        return 2
    if kind == 'bone':
        return 3
    if kind == 'skin':
        return 4
    if kind == 'eye':
        return 5
    if kind in ('soft', 'fat') or label in (502, 514):
        return 6
    return 1  # every other label of the maps is brain (intracranial vessels and lesions too)


def tissue(label: int) -> str:
    """The coarse tissue of a label (:data:`TISSUES`; unknown labels count as vessels)."""
    for name, members in TISSUES.items():
        if label in members:
            return name
    return 'vessel'


#: Structure names as in ``mri_synthseg``'s volume CSV.
SEG_NAMES = {
    0: 'background',
    2: 'left cerebral white matter',
    3: 'left cerebral cortex',
    4: 'left lateral ventricle',
    5: 'left inferior lateral ventricle',
    7: 'left cerebellum white matter',
    8: 'left cerebellum cortex',
    10: 'left thalamus',
    11: 'left caudate',
    12: 'left putamen',
    13: 'left pallidum',
    14: '3rd ventricle',
    15: '4th ventricle',
    16: 'brain-stem',
    17: 'left hippocampus',
    18: 'left amygdala',
    24: 'csf',
    26: 'left accumbens area',
    28: 'left ventral DC',
    41: 'right cerebral white matter',
    42: 'right cerebral cortex',
    43: 'right lateral ventricle',
    44: 'right inferior lateral ventricle',
    46: 'right cerebellum white matter',
    47: 'right cerebellum cortex',
    49: 'right thalamus',
    50: 'right caudate',
    51: 'right putamen',
    52: 'right pallidum',
    53: 'right hippocampus',
    54: 'right amygdala',
    58: 'right accumbens area',
    60: 'right ventral DC',
}

#: FreeSurfer colour-table names and colours of the segmentation labels.
FS_LUT = {
    0: ('Unknown', (0, 0, 0)),
    2: ('Left-Cerebral-White-Matter', (245, 245, 245)),
    3: ('Left-Cerebral-Cortex', (205, 62, 78)),
    4: ('Left-Lateral-Ventricle', (120, 18, 134)),
    5: ('Left-Inf-Lat-Vent', (196, 58, 250)),
    7: ('Left-Cerebellum-White-Matter', (220, 248, 164)),
    8: ('Left-Cerebellum-Cortex', (230, 148, 34)),
    10: ('Left-Thalamus', (0, 118, 14)),
    11: ('Left-Caudate', (122, 186, 220)),
    12: ('Left-Putamen', (236, 13, 176)),
    13: ('Left-Pallidum', (12, 48, 255)),
    14: ('3rd-Ventricle', (204, 182, 142)),
    15: ('4th-Ventricle', (42, 204, 164)),
    16: ('Brain-Stem', (119, 159, 176)),
    17: ('Left-Hippocampus', (220, 216, 20)),
    18: ('Left-Amygdala', (103, 255, 255)),
    24: ('CSF', (60, 60, 60)),
    26: ('Left-Accumbens-area', (255, 165, 0)),
    28: ('Left-VentralDC', (165, 42, 42)),
    41: ('Right-Cerebral-White-Matter', (0, 225, 0)),
    42: ('Right-Cerebral-Cortex', (205, 62, 78)),
    43: ('Right-Lateral-Ventricle', (120, 18, 134)),
    44: ('Right-Inf-Lat-Vent', (196, 58, 250)),
    46: ('Right-Cerebellum-White-Matter', (220, 248, 164)),
    47: ('Right-Cerebellum-Cortex', (230, 148, 34)),
    49: ('Right-Thalamus', (0, 118, 14)),
    50: ('Right-Caudate', (122, 186, 220)),
    51: ('Right-Putamen', (236, 13, 176)),
    52: ('Right-Pallidum', (13, 48, 255)),
    53: ('Right-Hippocampus', (220, 216, 20)),
    54: ('Right-Amygdala', (103, 255, 255)),
    58: ('Right-Accumbens-area', (255, 165, 0)),
    60: ('Right-VentralDC', (165, 42, 42)),
}

#: FreeSurfer colours of the Desikan-Killiany regions (same in both hemispheres).
DK_COLORS = (
    (25, 100, 40), (125, 100, 160), (100, 25, 0), (120, 70, 50), (220, 20, 100),
    (220, 20, 10), (180, 220, 140), (220, 60, 220), (180, 40, 120), (140, 20, 140),
    (20, 30, 140), (35, 75, 50), (225, 140, 140), (200, 35, 75), (160, 100, 50),
    (20, 220, 60), (60, 220, 60), (220, 180, 140), (20, 100, 50), (220, 60, 20),
    (120, 100, 60), (220, 20, 20), (220, 180, 220), (60, 20, 220), (160, 140, 180),
    (80, 20, 140), (75, 50, 125), (20, 220, 160), (20, 180, 140), (140, 220, 220),
    (80, 160, 20), (100, 0, 100), (70, 70, 70), (150, 150, 200), (255, 192, 32),
)  # fmt: skip

#: Topological classes for the connected-component clean-up (0 = skipped).
TOPOLOGY_CLASS = {
    0: 0, 24: 0, 2: 4, 3: 4, 4: 4, 5: 4, 41: 14, 42: 14, 43: 14, 44: 14, 7: 5, 8: 5,
    46: 15, 47: 15, 14: 1, 15: 2, 16: 3, 10: 6, 11: 7, 12: 8, 13: 9, 17: 10, 18: 11,
    26: 12, 28: 13, 49: 16, 50: 17, 51: 18, 52: 19, 53: 20, 54: 21, 58: 22, 60: 23,
}  # fmt: skip

#: QC classes (index 0 = background is not scored) and their CSV names.
QC_NAMES = (
    'background', 'general white matter', 'general grey matter', 'general csf', 'cerebellum',
    'brainstem', 'thalamus', 'putamen+pallidum', 'hippocampus+amygdala',
)  # fmt: skip
QC_CLASS = {
    0: 0, 24: 0, 2: 1, 41: 1, 11: 1, 50: 1, 26: 1, 58: 1, 28: 1, 60: 1, 3: 2, 42: 2,
    4: 3, 5: 3, 43: 3, 44: 3, 14: 3, 15: 3, 7: 4, 8: 4, 46: 4, 47: 4, 16: 5, 10: 6, 49: 6,
    12: 7, 13: 7, 51: 7, 52: 7, 17: 8, 18: 8, 53: 8, 54: 8,
}  # fmt: skip

#: Robust model: the five groups predicted by its first stage.
DENOISER_GROUPS = 5

#: Name of the first column of 2.0 volume tables.
TOTAL_NAME = 'total intracranial'


def seg_labels(v1: bool = False) -> tuple[int, ...]:
    return SEG_LABELS_V1 if v1 else SEG_LABELS_V2


def parc_name(label: int) -> str:
    if label == 0:
        return 'background'
    hemi = 'lh' if label < 2000 else 'rh'
    return f'ctx-{hemi}-{DK_REGIONS[label % 1000 - 1]}'


def name(label: int) -> str:
    """The ``mri_synthseg`` name of a segmentation or parcellation label."""
    return SEG_NAMES[label] if label in SEG_NAMES else parc_name(label)


def flip_indices(labels) -> list[int]:
    """For each channel, the channel holding its left/right counterpart (itself if none)."""
    partner = {}
    for left, right in LR_PAIRS:
        partner[left], partner[right] = right, left
    index = {lab: i for i, lab in enumerate(labels)}
    return [index.get(partner.get(lab, lab), i) for i, lab in enumerate(labels)]


def fs_name(label: int) -> str:
    if label in FS_LUT:
        return FS_LUT[label][0]
    return parc_name(label)


def color(label: int) -> str:
    """FreeSurfer colour of a label as ``#rrggbb``."""
    if label in FS_LUT:
        rgb = FS_LUT[label][1]
    else:
        rgb = DK_COLORS[label % 1000 - 1]
    return '#{:02x}{:02x}{:02x}'.format(*rgb)


def lookup_table(labels) -> list[dict]:
    """Rows for a BIDS ``dseg.tsv``: ``index``, ``name`` (FreeSurfer), ``color``."""
    return [{'index': int(lab), 'name': fs_name(lab), 'color': color(lab)} for lab in labels]


def dseg_tsv(labels) -> str:
    """A BIDS ``dseg.tsv`` (tab-separated, header ``index name color``) for ``labels``."""
    rows = ['index\tname\tcolor']
    rows += [f'{r["index"]}\t{r["name"]}\t{r["color"]}' for r in lookup_table(labels)]
    return '\n'.join(rows) + '\n'


def segmentation_labels_with_parcellation(v1: bool = False) -> tuple[int, ...]:
    """Every label a ``--parc`` segmentation can contain (cortex replaced by parcels)."""
    base = [lab for lab in seg_labels(v1) if lab not in CORTEX]
    return tuple(sorted(base + list(PARC_LABELS[1:])))
