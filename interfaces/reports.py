"""What the report-capable (``*RPT``) interfaces share: a reportlet input and output.

Mix these specs into an interface's own specs (module-level classes, so nodes pickle); the
drawing itself is done by the pure functions of :mod:`synthbids.reports.reportlets`.
"""

from __future__ import annotations

from nipype.interfaces.base import BaseTraitedSpec, File, TraitedSpec, traits


class ReportletInputSpec(BaseTraitedSpec):
    out_report = traits.Str(
        'report.svg', usedefault=True, desc='file name of the reportlet (in the node folder)'
    )


class ReportletOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc='SVG reportlet')
