#!/usr/bin/env bash
# Launcher for `slotml collect` under supervisord (see slotml-collect.conf). Reads everything
# from the environment so one file serves production and tests; `exec` so supervisord's pid IS
# the collector (its signals reach Python directly).
set -euo pipefail

: "${SLOTML_HOME:?SLOTML_HOME must name the data directory}"
BIN="${SLOTML_BIN:-slotml}"
mkdir -p "$SLOTML_HOME"

if [ -z "${SLOTML_DB_URL:-}" ]; then
    echo "slotml-collect: SLOTML_DB_URL not set; using SQLite under $SLOTML_HOME" >&2
fi

# Word splitting of SLOTML_COLLECT_ARGS is intended (a list of flags).
# shellcheck disable=SC2086
exec "$BIN" collect --data-dir "$SLOTML_HOME" --log-format json ${SLOTML_COLLECT_ARGS:-}
