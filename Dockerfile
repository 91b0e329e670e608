# syntax=docker/dockerfile:1
# The engine's one image: every process is a subcommand of `oee` (see compose.yaml, docs/deploy.md).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir "uv>=0.5"

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself (installed editable, so services.config.REPO_ROOT is /app and sql/ is found).
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# Run as an unprivileged user; /app itself is writable for data a process keeps in its working directory.
RUN useradd --create-home --uid 10001 oee && chown oee:oee /app
USER oee

ENV PATH="/app/.venv/bin:$PATH"

EXPOSE 3000 3100 3200
ENTRYPOINT ["oee"]
CMD ["--help"]
