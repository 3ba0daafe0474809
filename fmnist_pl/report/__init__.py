"""The report: figures (``plots``) and the self-contained HTML page (``html``), rendered from disk alone."""

from fmnist_pl.report.html import render

__all__ = ["render"]
