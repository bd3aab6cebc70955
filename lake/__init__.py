"""lake/: the nightly, incremental, hive-partitioned Parquet mirror of the store."""
