"""Traces in: the op table of SPEC §1, its metadata, validation and step selections.

* :mod:`~graphwia.trace.meta`: :class:`JobMeta`, :func:`load_meta`, metadata checks;
* :mod:`~graphwia.trace.optable`: :class:`Trace`, :func:`load_trace`, validation;
* :mod:`~graphwia.trace.steps`: step selections such as ``12 20-23``.
* :mod:`~graphwia.trace.files`: :func:`open_trace` (op tables and directories of rank traces), :func:`write_trace`;
* :mod:`~graphwia.trace.inputs`: which kind of input a path is (op table or rank traces), from its name;
* :mod:`~graphwia.trace.kineto`: import of PyTorch profiler (Kineto) traces.

Everything after this layer may assume a trace it receives is valid.
"""

from graphwia.trace.files import is_kineto_input, open_trace, write_trace
from graphwia.trace.meta import JobMeta, load_meta
from graphwia.trace.optable import Trace, load_trace

__all__ = ["JobMeta", "Trace", "is_kineto_input", "load_meta", "load_trace", "open_trace", "write_trace"]
