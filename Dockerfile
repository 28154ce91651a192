# The cart service. Build: docker build -t cart .   Run: see README.md "Deployment".
# Base pinned by digest (python:3.11-slim-bookworm); refresh it with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/cart-metrics

WORKDIR /app

# Dependencies first (cached while only code changes): exactly the locked versions,
# each checked against its hash; the embedded servers and dev tools are not in the lock.
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock

# Code owned by root and read-only for the service's user; it writes only to /tmp.
COPY . .
RUN python -m compileall -q /app \
    && groupadd --system --gid 10001 cart \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cart
USER 10001:10001

EXPOSE 8000
# Docker sends STOPSIGNAL to PID 1 (the server, exec'd by the entrypoint). A stop takes
# up to GRACEFUL_TIMEOUT (20 s) for requests plus 15 s for the background loops and
# pools: give the container `--stop-timeout 40` (compose: stop_grace_period: 40s).
STOPSIGNAL SIGTERM
# Liveness on the configured port (readiness, /readyz, is for the load balancer).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'); sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
ENTRYPOINT ["./entrypoint.sh"]
