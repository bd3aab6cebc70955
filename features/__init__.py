"""features/: point-in-time features at decision points, in DuckDB SQL over the lake.

- ``contract``: THE feature list (names, order, float32), decision points, tolerance, lookback,
  asset codes, and the definition of every feature. Pure Python, cheap to import.
- ``build``: ``build_training_set(con, points, stats, ...) -> pyarrow.Table`` and
  ``fit_stats(con, train_filter, params) -> dict`` over any DuckDB connection with
  ``slot_snapshots`` / ``slot_resolutions`` (``slotml.lake.connect()``).
- ``reference``: ``features_at(rows, prev_resolution, decision_ms, stats)``, the plain-Python
  spec for one window that tests (and serve/'s parity tests) hold the SQL to.
- ``synth``: synthetic lake tables for tests and benchmarks; ``run``: ``slotml features``.
"""
