"""Dataset-level files: description (container, sources), .bidsignore, boilerplate."""

from __future__ import annotations

import json
import re
from pathlib import Path

from synthbids.bids.citation import bibtex, boilerplate, readable_citations, write_citation
from synthbids.bids.dataset import DESCRIPTIONS, dataset_description, write_dataset_files
from synthbids.config import ModelSettings
from tests.conftest import REPO

EXPECTED = REPO / 'tests' / 'data' / 'expected_outputs.txt'


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


def official(name):
    from synthbids.core.weights import WeightsFile, official_entries

    entry = official_entries()[name]
    return WeightsFile(name, Path('/m') / entry.file, entry.sha256, 'cache', True, entry)


def packaged(kind):
    from synthbids.core.weights import packaged_entries, packaged_path, resolve

    entry = next(e for e in packaged_entries().values() if e.kind == kind)
    return resolve(kind, explicit=packaged_path(entry))


def test_boilerplate_describes_what_ran(tmp_path):
    strip = official('synthstrip-nocsf')
    text = boilerplate('1.2', ModelSettings(segment=False, no_csf=True, border=2), strip)
    assert 'excluding extra-cerebral cerebrospinal fluid' in text and 'at 2 mm' in text
    assert '[@synthseg]' not in text and 'Billot' not in text
    assert 'Hoopes' in text and 'CC0' in text
    assert 'with SynthStrip [@synthstrip]' in text
    assert 'weights published by its authors were used (synthstrip-nocsf: `synthstrip.nocsf.1.pt`'
    models = ModelSettings(robust=True, parc=True, qc=False)
    text = boilerplate('1.2', models, official('synthstrip'), official('synthseg-robust-2.0'))
    assert (
        'robust version' in text and 'Desikan-Killiany' in text and 'quality-control' not in text
    )
    assert text.count('- [synthseg_robust]') == 1 and 'with SynthSeg 2.0 [@synthseg]' in text
    assert '(synthseg-robust-2.0: `synthseg_robust_2.0.h5`, SHA-256 ' in text
    paths = write_citation(tmp_path, text)
    assert [p.name for p in paths] == ['CITATION.md', 'CITATION.bib']
    assert '@article{synthstrip,' in bibtex() and bibtex().count('\n@') + 1 == 8
    assert 'Head tissues' not in text  # no head weights given: nothing said about them
    assert 'SAMSEG' not in text and '[samseg]' not in text  # official weights: not refined


def test_boilerplate_names_packaged_weights_as_what_they_are():
    """The packaged networks are synthbids' own: never called "SynthSeg 2.0"; their model
    card's accuracy and the early model's warning are in the methods text."""
    text = boilerplate('1.2', ModelSettings(qc=False), packaged('strip'), packaged('seg'))
    assert 'SynthSeg 2.0' not in text and 'with SynthStrip [' not in text
    assert 'with the SynthSeg network [@synthseg]' in text
    assert text.count('default weights trained and packaged by synthbids') == 2
    strip_card, seg_card = packaged('strip').entry.accuracy, packaged('seg').entry.accuracy
    assert f'reports {strip_card}' in text and f'reports {seg_card}' in text
    assert '**Warning:** these weights are an early model' in text
    assert text.count('**Warning:**') == 1  # the SynthStrip weights have no warning
    # their default intensity refinement is described and cited, unless it was turned off
    assert 'as in SAMSEG [@samseg]' in text and text.count('- [samseg] Puonti') == 1
    off = boilerplate('1.2', ModelSettings(seg_refine=False), packaged('strip'), packaged('seg'))
    assert 'SAMSEG' not in off and '[samseg]' not in off
    assert '(Puonti et al., 2016)' in readable_citations(text)


def test_boilerplate_describes_the_head_tissues():
    """The head network has no published weights: its packaged weights are synthbids' own,
    said without comparing them to published ones, with their warning while they are early;
    the meshing methods are cited."""
    head = packaged('head')
    models = ModelSettings(segment=False)
    text = boilerplate('1.2', models, packaged('strip'), None, head)
    paragraph = next(p for p in text.split('\n\n') if p.startswith('Head tissues'))
    assert 'SynthStrip architecture [@synthstrip]' in paragraph
    assert 'following SynthSeg [@synthseg]' in paragraph
    assert 'The network ran with weights trained and packaged by synthbids (' in paragraph
    assert 'published by its authors' not in paragraph
    assert f'`{head.path.name}`, SHA-256 {head.sha256[:12]}' in paragraph
    assert ('**Warning:**' in paragraph) == bool(head.warning)
    assert '[@marching_cubes]' in paragraph and '[@taubin]' in paragraph
    for key in ('synthseg', 'marching_cubes', 'taubin'):
        assert text.count(f'- [{key}] ') == 1
    readable = readable_citations(text)
    assert '(Lewiner et al., 2003)' in readable and '(Taubin, 1995)' in readable
    no_head = ModelSettings(segment=False, head=False)
    assert 'Head tissues' not in boilerplate('1.2', no_head, packaged('strip'), None, head)


def test_readable_citations():
    text = readable_citations('Nipype [@nipype; @pybids] and [@synthseg].\n\n- [nipype] Gorg')
    assert text == (
        'Nipype (Gorgolewski et al., 2011; Yarkoni et al., 2019) and (Billot et al., 2023a).'
        '\n\n- (Gorgolewski et al., 2011) Gorg'
    )


def test_descriptions_list_every_desc_label_of_the_outputs(tmp_path):
    """``descriptions.tsv`` names every ``desc-`` label a run writes (the end-to-end list)."""
    used = set(re.findall(r'_desc-([a-zA-Z0-9]+)_', EXPECTED.read_text())) | {'aparcaseg'}
    write_dataset_files(tmp_path, version='1', bids_dir=tmp_path, raw_description={})
    rows = (tmp_path / 'descriptions.tsv').read_text().splitlines()
    assert rows[0] == 'desc_id\tdescription'
    assert {r.split('\t')[0] for r in rows[1:]} == used == set(DESCRIPTIONS)


def test_outputs_documentation_uses_the_real_names():
    """Every derivative name pattern of docs/outputs.md matches a file the end-to-end run
    writes (``<seg>`` standing for aseg/aparcaseg, ``<suffix>`` for a contrast)."""
    doc = (REPO / 'docs' / 'outputs.md').read_text()
    expected = EXPECTED.read_text().split()
    patterns = set(re.findall(r'`(_(?:[a-z]+-[^_`\s]+_)+[a-zA-Z<>]+(?:\.[a-z.]+)?)`', doc))
    assert len(patterns) >= 4 and '_seg-' not in doc
    for pattern in patterns:
        regex = re.escape(pattern).replace('<seg>', 'a(?:parc)?seg')
        regex = regex.replace('<suffix>', '[A-Za-z0-9]+') + ('$' if '.' in pattern else r'\.')
        assert any(re.search(regex, name) for name in expected), pattern


def test_readme_asks_users_for_nothing_in_shared():
    """``../shared`` (golden vectors) is the developers' business: docs/development.md."""
    assert '../shared' not in (REPO / 'README.md').read_text()
    assert (
        '../shared/golden/synthseg/synthseg2_random.h5'
        in (REPO / 'docs' / 'development.md').read_text()
    )
