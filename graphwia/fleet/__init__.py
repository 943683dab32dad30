"""Fleet analysis: many jobs, in parallel on local processes or a dask cluster.

* :mod:`~graphwia.fleet.run`: discover jobs, analyse them, resume, the fleet table;
* :mod:`~graphwia.fleet.report`: the fleet's outputs, ``fleet.csv``/``.parquet`` (:func:`write_fleet`) and ``fleet.html``;
* :mod:`~graphwia.fleet.pool`: local worker processes, one job at a time, that survive a dead or stuck worker.
"""
