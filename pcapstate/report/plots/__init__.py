"""Pictures of an analysis: ``pcapstate plot KIND CAPTURE -o FILE.png|.svg``.

Four kinds, each a module that turns the DataFrames of an
:class:`~pcapstate.analysis.Analysis` into a :class:`matplotlib.figure.Figure`:

* ``ladder`` (:mod:`.ladder`): one flow as a sequence diagram, the seeds' figure.
* ``states`` (:mod:`.states`): per-endpoint state timelines of many flows (Gantt).
* ``retries`` (:mod:`.retries`): attempt against interval of every retry chain, log-2.
* ``census`` (:mod:`.census`): connections in each state over time, per side.

This package's ``__init__`` imports nothing heavy: matplotlib is imported by the
kind modules, which :func:`figure` loads on demand, so listing :data:`KINDS`
(the command line does, to validate its argument) costs nothing.  Figures are
built with :class:`matplotlib.figure.Figure` and drawn by the Agg (PNG) or SVG
canvas, never through pyplot, so no global backend is touched.
"""
from __future__ import annotations

from importlib import import_module

KINDS = ("ladder", "states", "retries", "census")
SUFFIXES = (".png", ".svg")


def figure(kind: str, analysis, flow_id: int | None = None, size: tuple[int, int] | None = None):
    """The figure of ``kind`` for ``analysis``; ``size`` is (width, height) in pixels, else automatic."""
    if kind not in KINDS:
        raise ValueError(f"unknown picture {kind!r} (one of {', '.join(KINDS)})")
    return import_module(f"pcapstate.report.plots.{kind}").draw(analysis, flow_id, size)


def save(fig, path) -> tuple[int, int]:
    """Write ``fig`` as PNG or SVG (by the suffix of ``path``); its (width, height) in pixels."""
    from pcapstate.report.plots.style import save as save_figure

    return save_figure(fig, path)
