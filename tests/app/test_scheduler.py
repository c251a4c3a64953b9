"""The scheduler synthbids runs Nipype graphs with: how often it looks for finished nodes."""

from __future__ import annotations

import nipype.pipeline.plugins.base as nipype_plugins
from nipype import Node, Workflow
from nipype.interfaces.utility import Function

from synthbids.cli.supervise import POLL_SECONDS, SupervisedMultiProcPlugin


def _double(x):
    return 2 * x


def test_nodes_start_without_waiting_for_nipypes_two_second_poll(tmp_path, monkeypatch):
    """Nipype's loop sleeps ``poll_sleep_duration`` (2 s by default) between looks at finished
    tasks, so every node of a chain waited up to 2 s for its inputs."""
    naps = []
    real_sleep = nipype_plugins.sleep
    monkeypatch.setattr(nipype_plugins, 'sleep', lambda s: naps.append(s) or real_sleep(s))
    wf = Workflow('chain', base_dir=str(tmp_path / 'work'))
    a, b = (
        Node(Function(input_names=['x'], output_names=['y'], function=_double), name=name)
        for name in 'ab'
    )
    a.inputs.x = 1
    wf.connect(a, 'y', b, 'x')
    wf.config['execution'] = {'poll_sleep_duration': 2, 'crashfile_format': 'txt'}
    plugin = SupervisedMultiProcPlugin({'n_procs': 1}, notes_dir=tmp_path / 'notes')
    result = wf.run(plugin=plugin)
    (b_node,) = [n for n in result.nodes() if n.name == 'b']
    assert b_node.result.outputs.y == 4
    assert naps and max(naps) <= POLL_SECONDS < 0.5
    assert wf.config['execution']['poll_sleep_duration'] == 2  # the caller's settings stay
