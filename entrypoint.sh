#!/usr/bin/env sh
# Container entrypoint: validate settings, apply the cart branch of the migrations
# (production never applies the siblings' stand-in tables), then serve.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"

if [ "${RUN_MIGRATIONS:-true}" = "true" ]; then
  "$PYTHON" -m quart --app app migrate --branch cart
fi

exec "$PYTHON" -m hypercorn app:app \
  --bind "${BIND:-0.0.0.0:8000}" \
  --workers "${WORKERS:-2}" \
  --graceful-timeout 20 \
  --access-logfile -
