"""Build sMRIPrep's workflow for one participant and print what it would run, as JSON.

Runs with the separate sMRIPrep environment (``bash scripts/smriprep_env.sh``), not synthbids'::

    TEMPLATEFLOW_HOME=/path/to/home .smriprep-venv/bin/python tests/app/smriprep_graph.py \\
        BIDS_DIR OUTPUT_DIR participant --participant-label 01 \\
        --derivatives DERIV_DIR --output-spaces MNIColin27 -w WORK_DIR

The arguments are sMRIPrep's own command line, parsed by sMRIPrep's own parser
(``smriprep.cli.run.get_parser``); ``--fs-no-reconall`` is always added (anatomical
workflow only, no FreeSurfer). The workflow is built by sMRIPrep's own ``build_workflow``,
as ``smriprep`` does in its child process, but nothing is run: ``smriprep`` itself first
insists on FreeSurfer's ``mri_convert`` and a license (even with ``--fs-no-reconall``), then
refuses to start while any command of the graph is missing (its ``check_deps``).
The precomputed derivatives are collected with sMRIPrep's ``collect_derivatives``, exactly as
its ``init_single_subject_wf`` does. Nothing needs the network, ANTs, FSL or FreeSurfer, as long
as ``TEMPLATEFLOW_HOME`` holds the templates the graph needs at build time (the output
spaces, and the ``--skull-strip-template`` when no brain mask is precomputed).

Standard output: one JSON object with

* ``precomputed``: ``{participant: {key: file name(s)}}``, what ``collect_derivatives`` found;
* ``nodes``: the flattened graph, one ``{"name", "interface", "module", "command", "mapnode",
  "precomputed_inputs"}`` per node: full dotted name, interface class, the executable of a
  nipype ``CommandLine`` (else null), and the inputs set to files of the derivatives folders;
* ``edges``: ``[source node, destination node, [[source port, destination port], ...]]``;
* ``missing_commands``: sMRIPrep's own ``check_deps``, ``[[interface, command]]`` per node
  whose command is not on ``PATH`` (``smriprep`` exits with 2 while any is missing);
* ``internal_commands``: ``{interface: [commands]}`` for the interfaces of the graph that are
  not ``CommandLine`` but run external commands themselves.

Everything else (sMRIPrep's and nipype's logs) goes to standard error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

#: Interfaces that are not nipype ``CommandLine`` but run external commands themselves.
#: (Read from niworkflows: ``SpatialNormalization`` wraps ``antsRegistration``.)
INTERNAL_COMMANDS = {
    'SpatialNormalization': ['antsRegistration'],
    'SpatialNormalizationRPT': ['antsRegistration'],
    'RobustMNINormalization': ['antsRegistration'],
    'RobustMNINormalizationRPT': ['antsRegistration'],
}


def _names(found) -> object:
    """File names (not paths) in the structure ``collect_derivatives`` returns."""
    if isinstance(found, dict):
        return {key: _names(value) for key, value in found.items()}
    if isinstance(found, list | tuple):
        return [_names(value) for value in found]
    return Path(found).name


def collect(opts, subject_session_list) -> dict:
    """sMRIPrep's ``collect_derivatives`` for each participant, with the spaces it asks for."""
    from smriprep.utils.bids import collect_derivatives

    out = {}
    for subject, sessions in subject_session_list:
        std_spaces = opts.output_spaces.get_spaces(nonstandard=False, dim=(3,))
        std_spaces.append('fsnative')
        cache = {}
        for deriv_dir in opts.derivatives or []:
            cache.update(collect_derivatives(deriv_dir, subject, std_spaces, session_id=sessions))
        label = f'sub-{subject}' + (f'_ses-{"-".join(sessions)}' if sessions else '')
        out[label] = _names(cache)
    return out


def _port(port) -> str:
    """A connection's port: ``name``, or ``(name, function source, args)``."""
    return port[0] if isinstance(port, tuple) else port


def _under(value, roots: list[Path]) -> object:
    """The file names among ``value`` (a path or a list of them) that lie under ``roots``."""
    if isinstance(value, list | tuple):
        found = [_under(v, roots) for v in value]
        found = [f for f in found if f]
        return found or None
    if isinstance(value, str) and value.startswith('/'):
        path = Path(value).resolve()
        if any(path.is_relative_to(root) for root in roots):
            return path.name
    return None


def describe(workflow, derivatives: list[Path]) -> tuple[list[dict], list[list]]:
    """The flattened graph: every node (full name, interface class, command, the inputs set
    to files of the derivatives folders) and every connection between nodes."""
    from nipype.interfaces.base import CommandLine
    from nipype.pipeline.engine import MapNode

    graph = workflow._create_flat_graph()
    nodes = []
    for node in graph.nodes():
        interface = node._interface if isinstance(node, MapNode) else node.interface
        command = None
        if isinstance(interface, CommandLine):
            command = interface._cmd.split()[0]
        precomputed = {}
        for name, value in node.inputs.get().items():
            found = _under(value, derivatives)
            if found:
                precomputed[name] = found
        nodes.append(
            {
                'name': node.fullname,
                'interface': type(interface).__name__,
                'module': type(interface).__module__,
                'command': command,
                'mapnode': isinstance(node, MapNode),
                'precomputed_inputs': precomputed,
            }
        )
    edges = [
        [src.fullname, dst.fullname, [[_port(a), _port(b)] for a, b in data['connect']]]
        for src, dst, data in graph.edges(data=True)
    ]
    return sorted(nodes, key=lambda n: n['name']), sorted(edges)


def main(argv: list[str]) -> int:
    os.environ.setdefault('TEMPLATEFLOW_AUTOUPDATE', '0')
    argv = [*argv, '--fs-no-reconall'] if '--fs-no-reconall' not in argv else argv
    with contextlib.redirect_stdout(sys.stderr):
        import smriprep
        from smriprep.cli.run import build_workflow, check_deps, get_parser

        opts = get_parser().parse_args(argv)
        retval = {}
        build_workflow(opts, retval)
        workflow = retval['workflow']
        if workflow is None:
            print('sMRIPrep built no workflow', file=sys.stderr)
            return 1
        # build_workflow gives the participants as ``(subject, sessions or None)``
        precomputed = collect(opts, retval['subject_session_list'])
        roots = [Path(d).resolve() for d in opts.derivatives or []]
        nodes, edges = describe(workflow, roots)
        missing = [list(pair) for pair in check_deps(workflow)]
    used = {n['interface'] for n in nodes}
    report = {
        'smriprep': smriprep.__version__,
        'argv': argv,
        'templateflow_home': os.environ.get('TEMPLATEFLOW_HOME'),
        'precomputed': precomputed,
        'nodes': nodes,
        'edges': edges,
        'missing_commands': missing,
        'internal_commands': {k: v for k, v in INTERNAL_COMMANDS.items() if k in used},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
