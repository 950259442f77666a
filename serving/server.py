"""`python -m serving serve`: the model loaded once, then uvicorn on HOST:PORT until SIGTERM / SIGINT.

Port 0 picks a free port; the line ``serving on http://HOST:PORT`` (stdout) says which, once the service
accepts requests. On SIGTERM uvicorn stops accepting connections, finishes the requests in flight, the
batcher scores what is queued, and the process exits with status 0.
"""
from __future__ import annotations

import asyncio
import signal
import sys

import uvicorn

from serving.config import ServeConfig


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the bound address (port 0 gives an ephemeral one)."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"serving on http://{host}:{port}", flush=True)


def serve(app, host: str = ServeConfig.host, port: int = ServeConfig.port,
          log_level: str = ServeConfig.log_level) -> int:
    """Run until a shutdown signal; returns the exit status (0 after a clean shutdown)."""
    received = []

    def note(sig, _frame):
        # uvicorn restores this handler after its graceful shutdown and re-raises the signal it caught:
        # recording it (instead of dying by the default handler) lets the process exit 0.
        received.append(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                                    timeout_graceful_shutdown=30))
    asyncio.run(server.serve())
    if not server.started:
        print(f"error: could not serve on {host}:{port} (see the log above)", file=sys.stderr)
        return 1
    print("shut down cleanly" + (f" on {signal.Signals(received[0]).name}" if received else ""), flush=True)
    return 0
