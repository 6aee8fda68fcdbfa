# enx-bot in a container: config mounted at /config, everything else from the environment.
#   docker build -t enx-bot .
#   docker run --rm -e ENX_TOKEN=... -v "$PWD/configs:/config:ro" -p 9102:9102 enx-bot
# The entrypoint, environment and healthcheck below are tested without Docker by
# tests/test_ops_docker.py (hadolint, and the same command line run and stopped with SIGTERM).
FROM python:3.11-slim-bookworm

# tini as PID 1: forwards SIGTERM/SIGINT to the bot and reaps zombies
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group enx \
    && install -d -o enx -g enx /reports

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# dependencies first (pinned: requirements.lock, from `python deploy/lock.py`), then the code
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info
COPY configs /config

# The contract: /config holds the YAML; /reports receives report.json and report.html;
# /metrics, /healthz and /readyz listen on ENX_METRICS_PORT. Credentials come as env
# (ENX_TOKEN, or ENX_APP_ID/ENX_APP_KEY/ENX_ROOM_ID), never baked in.
ENV ENX_METRICS_PORT=9102 \
    ENX_METRICS_HOST=0.0.0.0 \
    ENX_REPORT_DIR=/reports \
    ENX_PROGRESS=off
EXPOSE 9102
USER 10001:10001

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ['ENX_METRICS_PORT'], timeout=2)"]

ENTRYPOINT ["tini", "--", "enx-bot"]
CMD ["run", "/config/bot.yaml"]
