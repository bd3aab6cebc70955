"""features/: point-in-time features at decision points, in DuckDB SQL over the lake."""
