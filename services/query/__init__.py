"""The order read API: current state, history and lists from the Postgres projection, with read-your-writes."""

from services.query.app import lifespan, part, routes

__all__ = ["lifespan", "part", "routes"]
