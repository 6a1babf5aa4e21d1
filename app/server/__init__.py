"""Running the HTTP server: the uvicorn process, its header-deadline protocol, /metrics port.

Kept apart from ``app.main`` (which builds the ASGI application) so the command line can start
a server without knowing how uvicorn is configured, and the application knows nothing of it.
"""
