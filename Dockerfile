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

# The project's own modules compiled now: their directories are root's, so Python could not cache bytecode
# there at run time.
RUN python -m compileall -q events services projections

# Run as an unprivileged user. Every directory it writes is created here and owned by it: a named volume
# mounted on one starts as a copy of it, ownership included, whereas a directory Docker creates for a mount
# belongs to root (the venue could not open its ledger). compose.yaml mounts venue-data on /app/venue-data
# (VENUE_LEDGER_PATH); /app/.stack is the default OEE_STATE_DIR (the router's Faust data directory).
# tests/unit/test_image_ownership.py holds compose.yaml's volumes and paths to these lines.
RUN useradd --create-home --uid 10001 oee \
 && chown oee:oee /app \
 && install -d -o oee -g oee /app/venue-data /app/.stack
USER oee

ENV PATH="/app/.venv/bin:$PATH"

# api, venue, standalone gateway; router and projector /metrics
EXPOSE 3000 3100 3200 9308 9309
ENTRYPOINT ["oee"]
CMD ["--help"]
