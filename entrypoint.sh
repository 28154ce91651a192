#!/usr/bin/env sh
# Container entrypoint: wait for PostgreSQL (bounded), apply the cart branch of the
# migrations under an advisory lock (any number of instances may start at once;
# production never applies the siblings' stand-in tables), then serve.
#   RUN_MIGRATIONS=false  skip the migration step
#   DB_WAIT_SECONDS=60    how long to wait for PostgreSQL before giving up
# The server listens on BIND, or 0.0.0.0:$PORT (default 8000), with WORKERS processes;
# on SIGTERM every request in flight is finished first (services/server.py).
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"

if [ "${RUN_MIGRATIONS:-true}" = "true" ]; then
  "$PYTHON" -m services.schema --branch cart --wait "${DB_WAIT_SECONDS:-60}"
fi

exec "$PYTHON" -m services.server
