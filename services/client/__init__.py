"""A typed Python client of the API (`AsyncClient`, and `Client` without asyncio); `oee order` is built on it.
See `docs/api.md` ("A client")."""

from services.client.client import AsyncClient, Frame
from services.client.errors import ApiError, NotSupported, StreamFailed, Unreachable
from services.client.sync import Client

__all__ = ["ApiError", "AsyncClient", "Client", "Frame", "NotSupported", "StreamFailed", "Unreachable"]
