"""Building blocks with no knowledge of traces: column tables, arrow ↔ numpy, atomic files.

* :mod:`~graphwia.utils.table`: :class:`Table`, equal-length numpy columns (pandas only on request);
* :mod:`~graphwia.utils.arrow`: pyarrow ↔ numpy without pyarrow's pandas shim;
* :mod:`~graphwia.utils.io`: atomic, all-or-nothing output files and safe YAML reading;
* :mod:`~graphwia.utils.names`: the one rule a name from an input file passes before it becomes a path;
* :mod:`~graphwia.utils.cluster`: reaching a dask.distributed cluster (dask imported only here).
"""
