"""Write (or check) `docs/openapi.json` and `docs/asyncapi.json`: the specs of a default deployment, for
readers without a running API. `oee schemas [--check]` runs this beside the event schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def documents() -> dict[str, dict[str, Any]]:
    """File name -> document, for the default configuration (no prefix, 12 partitions)."""
    from services import config
    from services.api.app import create_app
    from services.spec import asyncapi, openapi
    from services.spec.part import package_version

    settings = config.load({})
    app = create_app(settings)  # builds the routes only: nothing connects before the lifespan
    version = package_version()
    return {
        "openapi.json": openapi.document(app.routes, app.state.policy, version=version),
        "asyncapi.json": asyncapi.document(version=version, partitions=settings.partitions),
    }


def _render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = DOCS_DIR) -> list[Path]:
    written = []
    for name, doc in documents().items():
        path = directory / name
        text = _render(doc)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DOCS_DIR) -> list[str]:
    """The spec files missing or out of date."""
    return [
        str(directory / name)
        for name, doc in documents().items()
        if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != _render(doc)
    ]
