"""The API process (`oee api`): one bootstrap composing the ingress, the order reads, the WebSocket gateway,
the pages, lag and metrics behind one edge (authentication, origins, order limits)."""
