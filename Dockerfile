# enx-bot in a container: config mounted at /config, everything else from the environment.
#   docker build -t enx-bot .
#   docker run --rm -e ENX_TOKEN=... -v "$PWD/configs:/config:ro" enx-bot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY configs /config
RUN pip install . && useradd --create-home --uid 10001 enx

USER enx
# exec form: the bot is PID 1's child-free process and receives SIGTERM directly
ENTRYPOINT ["enx-bot"]
CMD ["run", "/config/bot.yaml"]
