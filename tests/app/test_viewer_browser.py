"""The report's interactive viewer in headless Chromium (software WebGL2, SwiftShader).

A real participant run (tiny networks, one T1w) writes the report; Chromium opens it from disk
as a person would (``file://``), driven through the DevTools protocol (:mod:`tests.app.cdp`):
the viewer starts without console errors, draws a picture that is not blank, redraws when a
layer is toggled, names the structure under the mouse, and works the same from a copy of the
output folder in a browser without network. Chromium is required in CI, skipped elsewhere.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from synthbids.cli.run import main
from tests.app.cdp import Browser
from tests.app.conftest import write_dataset

STATE = (
    "(() => { const v = document.querySelector('div.viewer'); const s = v && v.dataset.state;"
    " return ['ready', 'error', 'unsupported'].includes(s) ? s : ''; })()"
)
CANVAS = 'div.viewer .viewer-canvas'


@pytest.fixture(scope='module')
def report(tmp_path_factory, tiny_strip_ckpt, tiny_seg_models, tiny_head_ckpt):
    """A participant run's output folder and report (mask, segmentation, head tissues and
    meshes of a T1w and a T2w)."""
    root = tmp_path_factory.mktemp('viewer')
    images = ('sub-01/anat/sub-01_T1w.nii.gz', 'sub-01/anat/sub-01_T2w.nii.gz')
    bids = write_dataset(root / 'bids', images=images)
    out = root / 'out'
    argv = [str(bids), str(out), 'participant', '-w', str(root / 'work'), '--fast']
    argv += ['--strip-model', str(tiny_strip_ckpt), '--seg-model', str(tiny_seg_models)]
    argv += ['--head-model', str(tiny_head_ckpt), '--nprocs', '1', '--omp-nthreads', '1']
    assert main(argv) == 0
    return out / 'sub-01.html'


@pytest.fixture(scope='module')
def browser():
    with Browser() as b:
        yield b


def open_viewer(browser, page_path):
    page = browser.open(page_path.resolve().as_uri())
    assert page.wait_for(STATE) == 'ready', page.evaluate(
        "document.querySelector('div.viewer').innerText"
    )
    page.frames(5)
    return page


def not_blank(pixels: np.ndarray) -> bool:
    """Something drawn: a tenth of the pixels lit, in many grey levels and some colour."""
    lit = pixels.max(axis=2) > 40
    colour = np.ptp(pixels.astype(int), axis=2) > 40
    return lit.mean() > 0.1 and len(np.unique(pixels[lit][:, 0])) > 20 and colour.any()


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the pixels that differ visibly."""
    return float((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 30).mean())


def toggle(page, layer: str) -> None:
    page.evaluate(f'document.querySelector(\'input[data-layer="{layer}"]\').click()')
    page.frames(4)


def test_the_viewer_draws_the_results_without_errors(report, browser):
    page = open_viewer(browser, report)
    assert page.errors() == []
    pixels = page.screenshot(CANVAS)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600  # the canvas has its size
    assert not_blank(pixels)
    layers = page.evaluate(
        "[...document.querySelectorAll('div.viewer input[type=checkbox]')]"
        '.map(e => e.dataset.layer)'
    )
    assert layers == [
        'mask',
        'seg',
        'head',
        'scalp',
        'outerskull',
        'innerskull',
        'brain',
        'render',
    ]
    legends = page.evaluate("document.querySelector('div.viewer .viewer-legends').textContent")
    assert 'Bone (' in legends and ' mL)' in legends  # head tissues with their volumes
    status = page.evaluate("document.querySelector('div.viewer .viewer-status').textContent")
    assert re.match(r'x=-?\d+\.\d y=-?\d+\.\d z=-?\d+\.\d mm', status), status


def test_toggling_a_layer_changes_the_picture(report, browser):
    page = open_viewer(browser, report)
    before = page.screenshot(CANVAS)
    toggle(page, 'head')  # head tissues: hidden at first
    with_head = page.screenshot(CANVAS)
    assert changed(before, with_head) > 0.02
    toggle(page, 'head')
    assert changed(before, page.screenshot(CANVAS)) < 0.002  # back as it was
    toggle(page, 'mask')  # the mask's outline off
    assert changed(before, page.screenshot(CANVAS)) > 0.0005

    page.evaluate('document.querySelector(\'button[data-view="RENDER"]\').click()')
    page.frames(4)
    render = page.screenshot(CANVAS)
    assert changed(before, render) > 0.05 and (render.max(axis=2) > 40).mean() > 0.05
    toggle(page, 'outerskull')  # the skull mesh off: the brain... and the scalp remain
    assert changed(render, page.screenshot(CANVAS)) > 0.01
    assert page.errors() == []


def test_hovering_names_the_structure_and_its_volume(report, browser):
    page = open_viewer(browser, report)
    texts = hover_texts(page)
    named = [t for t in texts if re.search(r'segmentation: [\w-]+ \([\d\u2009]+ mm\u00b3\)', t)]
    assert named, texts
    assert len({re.match(r'x=\S+ y=\S+ z=\S+', t).group(0) for t in texts}) > 3  # it follows


def test_one_viewer_is_open_at_a_time(report, browser):
    """The first image's viewer opens with the page; opening the second (here while the first
    still loads) closes it: one WebGL context. The first opens again from its button."""
    states = "[...document.querySelectorAll('div.viewer')].map(v => v.dataset.state)"
    buttons = "document.querySelectorAll('div.viewer button.viewer-open')"
    page = browser.open(report.resolve().as_uri())
    page.wait_for(f"document.readyState !== 'loading' && {states}.length === 2")
    page.evaluate(f'{buttons}[1].click()')
    page.wait_for(f"{states}.join() === 'closed,ready'")
    page.frames(5)
    assert not_blank(page.screenshot('div.viewer[data-key="sub_01_T2w"] .viewer-canvas'))
    assert page.evaluate("document.querySelectorAll('div.viewer canvas').length") == 1
    assert page.evaluate(f'[...{buttons}].map(b => b.hidden)') == [False, True]
    page.evaluate(f'{buttons}[0].click()')
    page.wait_for(f"{states}.join() === 'ready,closed'")
    page.frames(5)
    assert not_blank(page.screenshot('div.viewer[data-key="sub_01_T1w"] .viewer-canvas'))
    assert page.evaluate("document.querySelectorAll('div.viewer canvas').length") == 1
    assert page.errors() == []


def test_the_copied_output_folder_works_offline(report, tmp_path):
    """The folder copied elsewhere (as moved, zipped or shared), opened in a Chromium with no
    network: the same viewer, and every file it reads is inside the copy."""
    copy = tmp_path / 'copied'
    shutil.copytree(report.parent, copy)
    with Browser(offline=True) as offline:
        page = open_viewer(offline, copy / report.name)
        assert page.errors() == []
        assert not_blank(page.screenshot(CANVAS))
        urls = page.requested_urls()
    inside = copy.resolve().as_uri() + '/'
    assert [u for u in urls if not (u.startswith(inside) or u.startswith('data:'))] == []
    assert any(u.endswith('.umd.js') for u in urls) and any(u.endswith('_T1w.js') for u in urls)


def test_without_webgl2_the_report_keeps_its_figures(report):
    with Browser(flags=('--disable-webgl', '--disable-3d-apis')) as plain:
        page = plain.open(report.resolve().as_uri())
        assert page.wait_for(STATE) == 'unsupported'
        text = page.evaluate("document.querySelector('div.viewer').innerText")
        assert 'no WebGL2' in text and 'figures above' in text
        states = "[...document.querySelectorAll('img.reportlet')].map(i => i.dataset.state)"
        # the mosaics may still be loading (large SVGs on a busy machine): wait for each
        page.wait_for(f"{states}.every(s => s !== 'pending')")
        loaded = page.evaluate(states)
        assert loaded and set(loaded) == {'loaded'}
        assert page.errors() == []


def hover_texts(page, row: float = 0.5) -> set[str]:
    """The status line with the mouse at points across the canvas (three planes, 3-D)."""
    left, top, width, height = page.evaluate(
        f"(() => {{ const c = document.querySelector('{CANVAS} canvas');"
        " c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect();"
        ' return [r.left, r.top, r.width, r.height]; })()'
    )
    texts = set()
    for fx in np.linspace(0.05, 0.95, 19):
        x, y = left + fx * width, top + row * height
        page.send('Input.dispatchMouseEvent', {'type': 'mouseMoved', 'x': x, 'y': y})
        texts.add(page.evaluate("document.querySelector('div.viewer .viewer-status').textContent"))
    return texts


def test_colin27_participant_report_has_a_working_viewer(ch2, tmp_path, monkeypatch):
    """The BIDS App on Colin27 with the packaged weights (as scripts/demo.sh runs it): the
    report's viewer shows the head with its mask, segmentation, head tissues and meshes."""
    monkeypatch.setenv('SYNTHBIDS_CACHE', str(tmp_path / 'cache'))  # packaged weights only
    bids = tmp_path / 'bids'
    (bids / 'sub-colin27/anat').mkdir(parents=True)
    shutil.copyfile(ch2, bids / 'sub-colin27/anat/sub-colin27_T1w.nii.gz')
    (bids / 'dataset_description.json').write_text('{"Name": "Colin27", "BIDSVersion": "1.9.0"}')
    out = tmp_path / 'out'
    argv = [str(bids), str(out), 'participant', '-w', str(tmp_path / 'work'), '--nprocs', '1']
    assert main(argv) == 0
    report = out / 'sub-colin27.html'
    assert report.stat().st_size < 100_000  # the data is beside the report, not in it
    data = out / 'sub-colin27/figures/viewer/sub-colin27_T1w.js'
    assert 500_000 < data.stat().st_size < 4_000_000

    with Browser(offline=True) as b:
        page = open_viewer(b, report)
        assert page.errors() == []
        before = page.screenshot(CANVAS)
        assert not_blank(before)
        layers = "[...document.querySelectorAll('div.viewer input[type=checkbox]')]"
        assert page.evaluate(f'{layers}.map(e => e.dataset.layer)') == [
            'mask', 'seg', 'head', 'scalp', 'outerskull', 'innerskull', 'brain', 'render'
        ]  # fmt: skip
        toggle(page, 'seg')
        assert changed(before, page.screenshot(CANVAS)) > 0.05  # the labels cover the brain
        toggle(page, 'seg')
        texts = hover_texts(page)
        named = re.compile(r'segmentation: (Left|Right)-[\w-]+ \([\d\u2009]+ mm\u00b3\)')
        assert any(named.search(t) for t in texts), texts
        assert any('brain mask: brain mask (' in t for t in texts)
        sides = set()
        for text in texts | hover_texts(page, row=0.4):  # the subject's left is on the left
            x = float(re.match(r'x=(\S+)', text).group(1))
            side = re.search(r'segmentation: (Left|Right)-', text)
            if side and abs(x) > 10:
                assert (x < 0) == (side.group(1) == 'Left'), text
                sides.add(side.group(1))
        assert sides == {'Left', 'Right'}
        page.evaluate('document.querySelector(\'button[data-view="RENDER"]\').click()')
        page.frames(4)
        skull = page.screenshot(CANVAS)
        toggle(page, 'render')  # the head's volume rendering, over the meshes
        assert changed(skull, page.screenshot(CANVAS)) > 0.05
        assert page.errors() == []
