"""SynthSeg label tables against the reference's (``golden/synthseg_label_tables.json``)."""

from __future__ import annotations

import csv
import json

import pytest

from synthbids.core import labels as L


@pytest.fixture(scope='module')
def tables(shared_dir):
    return json.loads((shared_dir / 'golden/synthseg/synthseg_label_tables.json').read_text())


@pytest.mark.shared
def test_label_lists_and_derived_tables_match_the_reference(tables):
    for version, v1 in (('synthseg2', False), ('synthseg1', True)):
        labels = list(L.seg_labels(v1))
        assert labels == tables[version]['labels_segmentation_sorted']
        assert L.flip_indices(labels) == tables[version]['flip_indices']
        assert [L.TOPOLOGY_CLASS[lab] for lab in labels] == tables[
            f'{version}_topological_classes_per_sorted_seg_label'
        ]
        assert [L.QC_CLASS[lab] for lab in labels] == tables[
            f'{version}_qc_labels_per_sorted_seg_label'
        ]
    assert list(L.PARC_LABELS) == tables['parcellation_labels_sorted']
    assert [L.name(lab) for lab in L.SEG_LABELS_V2] == tables[
        'synthseg2_names_per_sorted_seg_label'
    ]


@pytest.mark.shared
def test_csv_names_match_the_reference_headers(shared_dir):
    d = shared_dir / 'golden/synthseg/pipeline'
    header = next(csv.reader((d / 'synthseg2_parc_vol.csv').open()))[1:]
    from synthbids.core.seg_postprocess import seg_volume_names

    assert seg_volume_names(L.SEG_LABELS_V2, v1=False, parc=True) == header
    header = next(csv.reader((d / 'synthseg1_vol.csv').open()))[1:]
    assert seg_volume_names(L.SEG_LABELS_V1, v1=True, parc=False) == header
    header = next(csv.reader((d / 'synthseg2_qc_tf213_qc.csv').open()))[1:]
    assert list(L.QC_NAMES[1:]) == header


def test_lookup_table_for_bids():
    rows = L.lookup_table(L.segmentation_labels_with_parcellation())
    assert len(rows) == 31 + 68
    assert rows[0] == {'index': 0, 'name': 'Unknown', 'color': '#000000'}
    by_index = {r['index']: r for r in rows}
    assert by_index[2]['name'] == 'Left-Cerebral-White-Matter'
    assert by_index[10]['name'] == 'Left-Thalamus' and by_index[10]['color'] == '#00760e'
    assert by_index[2035] == {'index': 2035, 'name': 'ctx-rh-insula', 'color': '#ffc020'}
    assert 3 not in by_index and 42 not in by_index
    tsv = L.dseg_tsv(L.SEG_LABELS_V2).splitlines()
    assert tsv[0] == 'index\tname\tcolor' and tsv[17] == '24\tCSF\t#3c3c3c' and len(tsv) == 34


def mirror_by_name(labels) -> dict[int, int]:
    """Each label's left/right counterpart found from FreeSurfer's names alone ('Left-X' and
    'Right-X'); labels without a side are their own counterpart."""
    by_name = {L.fs_name(lab): lab for lab in labels}
    out = {}
    for lab in labels:
        name = L.fs_name(lab)
        for side, other in (('Left-', 'Right-'), ('Right-', 'Left-')):
            if name.startswith(side):
                out[lab] = by_name[other + name[len(side) :]]
                break
        else:
            out[lab] = lab
    return out


@pytest.mark.parametrize('v1', [False, True])
def test_flip_table_pairs_the_hemispheres_that_the_names_pair(v1):
    """The flip augmentation's channel table, checked against facts it is not built from:
    FreeSurfer's names ('Left-X' <-> 'Right-X'), mri_synthseg's CSV names ('left x' <->
    'right x'), and being a permutation that undoes itself."""
    labels = list(L.seg_labels(v1))
    flip = L.flip_indices(labels)
    mirror = mirror_by_name(labels)
    assert [labels[j] for j in flip] == [mirror[lab] for lab in labels]
    assert sorted(flip) == list(range(len(labels)))
    assert [flip[j] for j in flip] == list(range(len(labels)))
    moved = [lab for i, lab in enumerate(labels) if flip[i] != i]
    assert len(moved) == 28 and 0 not in moved and 24 not in moved and 16 not in moved
    for i, lab in enumerate(labels):
        name, other = L.name(lab), L.name(labels[flip[i]])
        if name.startswith('left '):
            assert other == 'right ' + name[5:]
        else:
            assert name.startswith('right ') == other.startswith('left ')
            assert name.startswith('right ') or other == name
