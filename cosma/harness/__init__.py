"""The benchmark harness: ``cosma compare`` and the ``bench_*`` commands that write the
tables in ``results/``, with the adapters for peer tools (``peers``). It may import every
part of the project; no part of the project imports it."""
