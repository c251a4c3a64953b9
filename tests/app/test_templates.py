"""``--output-spaces``: parsing fMRIPrep's syntax, finding templates in TEMPLATEFLOW_HOME
without the network, and the one-line errors before any work."""

from __future__ import annotations

import socket

import pytest

from synthbids.bids.templates import Space, parse_output_spaces, resolve_template
from synthbids.config import from_toml, to_toml
from synthbids.core.errors import UsageError


def test_parsing_follows_fmriprep_syntax():
    spaces = parse_output_spaces(
        [
            'MNI152NLin2009cAsym',
            'MNI152NLin2009cAsym:res-2',
            'MNIInfant:cohort-1:res-1',
            'MNI152NLin2009cAsym',
        ]  # fmt: skip
    )
    assert spaces == [
        Space('MNI152NLin2009cAsym'),
        Space('MNI152NLin2009cAsym', res='2'),
        Space('MNIInfant', cohort='1', res='1'),
    ]
    assert spaces[2].fullname == 'MNIInfant:cohort-1:res-1'
    assert spaces[2].entities == {'space': 'MNIInfant', 'cohort': '1', 'res': '1'}
    assert spaces[0].entities == {'space': 'MNI152NLin2009cAsym'}  # no res- unless asked


@pytest.mark.parametrize(
    ('value', 'message'),
    [
        ('MNI152NLin2009cAsym:resolution-2', "bad modifier 'resolution-2'"),
        ('MNI152NLin2009cAsym:res-2:res-1', "bad modifier 'res-1'"),
        ('T1w', 'not a template'),
        ('fsaverage5', 'not a template'),
        ('MNI_152', "'MNI_152' is not a TemplateFlow name"),
    ],
)
def test_bad_values_are_refused_by_name(value, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_output_spaces([value])
    assert value in str(err.value) and '\n' not in str(err.value)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: templates are never downloaded in a run."""

    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)


@pytest.fixture
def colin_home(tmp_path, monkeypatch, ch2):
    from tests.tplhome import build_colin27_home

    home = build_colin27_home(tmp_path / 'templateflow')
    monkeypatch.setenv('TEMPLATEFLOW_HOME', str(home))
    monkeypatch.setenv('TEMPLATEFLOW_AUTOUPDATE', '0')
    return home


def test_resolution_from_the_test_home(colin_home, no_network):
    default = resolve_template('MNIColin27')
    assert default.image.name == 'tpl-MNIColin27_res-01_T1w.nii.gz'
    assert default.mask.name == 'tpl-MNIColin27_res-01_desc-brain_mask.nii.gz'
    assert default.resolution == 1.0
    coarse = resolve_template('MNIColin27:res-2')
    assert coarse.image.name == 'tpl-MNIColin27_res-02_T1w.nii.gz' and coarse.resolution == 2.0
    assert coarse.description['Identifier'] == 'MNIColin27'


def test_templateflow_layout_without_res(tmp_path, monkeypatch, colin_home, no_network):
    """TemplateFlow's own MNIColin27 has one resolution and no res- entity."""
    tpl = colin_home / 'tpl-MNIColin27'
    for kind in ('T1w', 'desc-brain_mask'):
        (tpl / f'tpl-MNIColin27_res-01_{kind}.nii.gz').rename(
            tpl / f'tpl-MNIColin27_{kind}.nii.gz'
        )
        (tpl / f'tpl-MNIColin27_res-02_{kind}.nii.gz').unlink()
    files = resolve_template('MNIColin27')
    assert files.image.name == 'tpl-MNIColin27_T1w.nii.gz'


def test_missing_template_files_give_one_line(tmp_path, monkeypatch, no_network):
    """An empty home: templateflow unpacks its skeleton (zero-size placeholders) offline;
    the placeholders are named as missing, with the command that fetches them."""
    monkeypatch.setenv('TEMPLATEFLOW_HOME', str(tmp_path / 'empty'))
    monkeypatch.setenv('TEMPLATEFLOW_AUTOUPDATE', '0')
    with pytest.raises(UsageError) as err:
        resolve_template('MNI152NLin2009cAsym:res-2')
    text = str(err.value)
    assert '\n' not in text
    assert 'tpl-MNI152NLin2009cAsym_res-02_T1w.nii.gz' in text
    assert 'python scripts/fetch_templates.py MNI152NLin2009cAsym:res-2' in text
    with pytest.raises(UsageError, match='template NoSuchTemplate is not in TEMPLATEFLOW_HOME'):
        resolve_template('NoSuchTemplate')


def _cli(argv, capsys):
    from synthbids.cli.run import main

    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_refuses_unknown_templates_before_any_work(bids_dataset, tmp_path, colin_home, capsys):
    out = tmp_path / 'out'
    argv = [str(bids_dataset), str(out), 'participant', '-w', str(tmp_path / 'w')]
    code, err = _cli(argv + ['--output-spaces', 'Nonexistent'], capsys)
    assert code == 64 and len(err) == 1 and 'Nonexistent' in err[0]
    assert not out.exists() or not any(out.iterdir())
    code, err = _cli(argv + ['--output-spaces', 'MNIColin27', '--no-seg'], capsys)
    assert code == 64 and 'needs the segmentation' in err[0]
    code, err = _cli(argv + ['--output-spaces', 'MNIColin27:bogus-1'], capsys)
    assert code == 64 and "bad modifier 'bogus-1'" in err[0]


def test_settings_carry_the_spaces(bids_dataset, tmp_path, colin_home):
    from synthbids.cli.parser import get_parser
    from synthbids.cli.settings import build_settings

    args = get_parser().parse_args(
        [
            str(bids_dataset),
            str(tmp_path / 'out'),
            'participant',
            '-w',
            str(tmp_path / 'w'),
            '--output-spaces',
            'MNIColin27:res-2',
            'MNIColin27',
            'MNIColin27:res-02',
        ]  # fmt: skip
    )
    settings = build_settings(args)
    assert settings.execution.output_spaces == (
        'MNIColin27:res-2',
        'MNIColin27',
        'MNIColin27:res-02',
    )
    assert from_toml(to_toml(settings)).execution.output_spaces == settings.execution.output_spaces
