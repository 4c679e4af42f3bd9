"""Plain execution code, no Kedro: the parallel map and its Dask cluster (``parallel``), the
simulation plan and per-run work (``runs``), the experiment write lock (``lock``), progress bars
(``progress``) and the rich console on stderr (``console``). See ``docs/architecture.md``."""
