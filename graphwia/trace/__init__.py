"""Traces in: the op table of SPEC §1, its metadata, validation and step selections.

* :mod:`~graphwia.trace.optable`: :class:`Trace`, :class:`JobMeta`, :func:`load_trace`, validation;
* :mod:`~graphwia.trace.steps`: step selections such as ``12 20-23``.

Everything after this layer may assume a trace it receives is valid.
"""

from graphwia.trace.optable import JobMeta, Trace, load_meta, load_trace

__all__ = ["JobMeta", "Trace", "load_meta", "load_trace"]
