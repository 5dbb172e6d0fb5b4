"""The HTML report: every compiled table beside the paper's numbers, the figures and the provenance.

``deltaspace report --results DIR --tables DIR --out reports/index.html`` builds one self-contained
page (CSS inline, images as ``data:`` URIs, no script). See ``docs/report.md``.
"""

from .build import Report, ReportError, build_report, gather, render, write_html

__all__ = ["Report", "ReportError", "build_report", "gather", "render", "write_html"]
