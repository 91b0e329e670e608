"""How our processes serve HTTP and WebSockets: uvicorn with bounded protocols (`limits`, `protocols`)."""
