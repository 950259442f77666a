"""`python -m serving serve`: the model loaded once, then uvicorn on HOST:PORT until SIGTERM / SIGINT.

Port 0 picks a free port; the line ``serving on http://HOST:PORT`` (stdout) says which, once the service
accepts requests. The first SIGTERM (or Ctrl-C) drains: at once the listening socket closes (new connections
are refused), the app's ``drain()`` makes /healthz answer 503 "draining" and has the batcher score what it
holds without waiting, and stdout says ``draining: ...``; uvicorn then waits up to the grace time for the
accepted requests to be answered (cancelling any left after it), the batcher stops, and the process exits 0.
"""
from __future__ import annotations

import asyncio
import signal
import sys

import uvicorn

from serving.config import ServeConfig
from serving.logs import log_config


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the bound address (port 0 gives an ephemeral one) and draining on a signal."""

    def __init__(self, config: uvicorn.Config, on_drain=None):
        super().__init__(config)
        self.on_drain, self._loop = on_drain, None

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"serving on http://{host}:{port}", flush=True)

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit and self._loop is not None:
            self._loop.call_soon_threadsafe(self._drain)   # a signal handler: the loop does the work
        super().handle_exit(sig, frame)

    def _drain(self) -> None:
        for server in self.servers:
            server.close()   # stop accepting now, not at uvicorn's next tick
        if self.on_drain is not None:
            self.on_drain()
        print(f"draining: new connections refused; answering the {len(self.server_state.tasks)} accepted requests "
              f"within {self.config.timeout_graceful_shutdown:g} s", flush=True)


def serve(app, server_config: ServeConfig | None = None) -> int:
    """Run until a shutdown signal, listening and logging as `server_config` says; returns the exit status (0 after
    a clean shutdown)."""
    server_config = server_config or ServeConfig()
    host, port, grace_s = server_config.host, server_config.port, server_config.grace_s
    received = []

    def note(sig, _frame):
        # uvicorn restores this handler after its graceful shutdown and re-raises the signal it caught:
        # recording it (instead of dying by the default handler) lets the process exit 0.
        received.append(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)
    config = uvicorn.Config(app, host=host, port=port, log_level=server_config.log_level, lifespan="on",
                            access_log=False, log_config=log_config(server_config.log_level, server_config.log_format),
                            timeout_graceful_shutdown=grace_s)
    server = _Server(config, on_drain=getattr(app.state, "drain", None))
    asyncio.run(server.serve())
    if not server.started:
        print(f"error: could not serve on {host}:{port} (see the log above)", file=sys.stderr)
        return 1
    print("shut down cleanly" + (f" on {signal.Signals(received[0]).name}" if received else ""), flush=True)
    return 0
