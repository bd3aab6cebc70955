"""slotml: Polymarket Up/Down slot data -> calibrated, low-latency entry decisions.

The pipeline stages install as subpackages of this distribution (see pyproject.toml):
``slotml.ingest`` (ingest/), ``slotml.lake`` (lake/), ``slotml.features`` (features/),
``slotml.train`` (train/), ``slotml.serve`` (serve/) and ``slotml.sim`` (sim/). This package
holds only what belongs to no stage: the CLI, settings, logging and errors.
"""

__version__ = "0.1.0"
