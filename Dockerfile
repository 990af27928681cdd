# infer-bot: slim, non-root, pinned base.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 infer-bot \
 && useradd --system --uid 10001 --gid infer-bot --home-dir /var/lib/infer-bot --create-home infer-bot

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY ops ./ops
RUN pip install ".[postgres]"

USER 10001:10001
WORKDIR /var/lib/infer-bot
ENV PORT=3000 INFER_BOT_DATABASE_URL=sqlite:////var/lib/infer-bot/infer-bot.sqlite3
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
ENTRYPOINT ["infer-bot"]
CMD ["serve"]
