"""Jinja2 templates of the reports (``synthbids/data/reports``), HTML-escaped by default."""

from __future__ import annotations

from functools import cache


@cache
def _environment():
    import jinja2

    from ..data import data_path

    folder = data_path('reports')
    loader = jinja2.FunctionLoader(lambda name: folder.joinpath(name).read_text())
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters['volume'] = _volume
    env.filters['score'] = lambda v: 'n/a' if v is None else f'{v:.3f}'
    env.filters['ml'] = lambda v: 'n/a' if v is None else f'{v:.1f}'
    env.globals['style'] = folder.joinpath('style.css').read_text()
    env.globals['viewer_js'] = folder.joinpath('viewer.js').read_text()
    return env


def _volume(value) -> str:
    if value is None:
        return 'n/a'
    return f'{value:,.0f}'.replace(',', '\u2009')


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)
