"""Dataset-level files: description (container, sources), .bidsignore, boilerplate."""

from __future__ import annotations

import json

from synthbids.bids.citation import bibtex, boilerplate, write_citation
from synthbids.bids.dataset import dataset_description, write_dataset_files
from synthbids.config import ModelSettings


def test_description_names_the_container_and_the_source(tmp_path):
    raw = {
        'Name': 'ds',
        'DatasetDOI': '10.18112/openneuro.ds000001.v1',
        'License': 'CC0',
        'Version': '1.0.1',
    }
    env = {'SYNTHBIDS_CONTAINER_TYPE': 'docker', 'SYNTHBIDS_CONTAINER_TAG': 'synthbids:1.0'}
    desc = dataset_description('1.0', tmp_path, raw, environ=env)
    assert desc['DatasetType'] == 'derivative' and desc['License'] == 'CC0'
    assert desc['GeneratedBy'] == [
        {
            'Name': 'synthbids',
            'Version': '1.0',
            'CodeURL': 'https://github.com/synthbids/synthbids',
            'Description': desc['GeneratedBy'][0]['Description'],
            'Container': {'Type': 'docker', 'Tag': 'synthbids:1.0'},
        }
    ]
    assert desc['SourceDatasets'] == [
        {
            'URL': tmp_path.as_uri(),
            'DOI': 'doi:10.18112/openneuro.ds000001.v1',
            'Version': '1.0.1',
        }
    ]
    assert desc['DatasetLinks'] == {'raw': tmp_path.as_uri()}
    assert (
        'Container' not in dataset_description('1.0', tmp_path, raw, environ={})['GeneratedBy'][0]
    )


def test_dataset_files(tmp_path):
    rows = [{'index': 0, 'name': 'Unknown', 'color': '#000000'}]
    written = write_dataset_files(
        tmp_path / 'out',
        version='1',
        bids_dir=tmp_path,
        raw_description={},
        lookup_tables={'aseg': rows},
    )
    assert [p.name for p in written] == [
        'dataset_description.json',
        '.bidsignore',
        'descriptions.tsv',
        'desc-aseg_dseg.tsv',
    ]
    ignore = (tmp_path / 'out/.bidsignore').read_text().split()
    assert {'*.html', 'logs/', '*/figures/*', '*_volumes.tsv', '*_qc.tsv'} <= set(ignore)
    assert (
        tmp_path / 'out/desc-aseg_dseg.tsv'
    ).read_text() == 'index\tname\tcolor\n0\tUnknown\t#000000\n'
    assert json.loads((tmp_path / 'out/dataset_description.json').read_text())['Name'] == (
        f'synthbids outputs for {tmp_path.name}'
    )
    assert not list((tmp_path / 'out').glob('.*.partial'))


def test_boilerplate_describes_what_ran(tmp_path):
    text = boilerplate('1.2', ModelSettings(segment=False, no_csf=True, border=2), 'ss', '')
    assert 'excluding extra-cerebral cerebrospinal fluid' in text and 'at 2 mm' in text
    assert '[@synthseg]' not in text and 'Billot' not in text
    assert 'Hoopes' in text and 'CC0' in text
    text = boilerplate('1.2', ModelSettings(robust=True, parc=True, qc=False), 'ss', 'sg')
    assert (
        'robust version' in text and 'Desikan-Killiany' in text and 'quality-control' not in text
    )
    assert text.count('- [synthseg_robust]') == 1 and '(weights: sg)' in text
    paths = write_citation(tmp_path, text)
    assert [p.name for p in paths] == ['CITATION.md', 'CITATION.bib']
    assert '@article{synthstrip,' in bibtex() and bibtex().count('@article') == 5
