"""Entry point `rodata-api`: validate the configuration, then run uvicorn in this process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from types import FrameType

import pyarrow as pa
import uvicorn

from .config import ConfigError, Settings, load_settings
from .logs import configure_logging

log = logging.getLogger("rodata.api")


class Server(uvicorn.Server):
    """uvicorn's server with a drain phase: on SIGTERM readiness fails first, then it stops.

    The first SIGTERM or SIGINT marks the store as draining (/readyz returns 503) and, after
    RODATA_DRAIN_SECONDS, asks uvicorn to stop accepting connections; requests in flight then
    have RODATA_GRACE_SECONDS to finish. The process exits 0. A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, settings: Settings, store: object) -> None:
        super().__init__(config)
        self.settings = settings
        self.store = store
        self.loop: asyncio.AbstractEventLoop | None = None
        self.signals = 0

    async def serve(self, sockets: list | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(number, self.handle_exit, number, None)
        await self._serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("second signal; stopping without waiting for requests",
                        extra={"signal": signal.Signals(sig).name})
            self.should_exit = True
            self.force_exit = True
            return
        self.store.draining = True
        log.info("shutdown requested; readiness now fails", extra={
            "signal": signal.Signals(sig).name, "drain_seconds": self.settings.drain_seconds,
            "grace_seconds": self.settings.grace_seconds})
        if self.loop is None:
            self.should_exit = True
            return
        self.loop.call_later(self.settings.drain_seconds, self._stop)

    def _stop(self) -> None:
        log.info("draining done; closing the listener and finishing requests in flight")
        self.should_exit = True


def main(argv: list[str] | None = None) -> int:
    """Run the service until SIGTERM; return the exit status."""
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"rodata-api: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)

    from .main import create_app

    app = create_app(settings)
    log.info("starting", extra={"host": settings.host, "port": settings.port,
                                "data_root": str(settings.data_root),
                                "datasets": list(settings.datasets) or "all",
                                "workers": settings.workers})
    if settings.workers > 1:
        # NOTE: several workers run under uvicorn's process manager, which has no drain phase
        # and imports the app by name. One worker per pod is the supported layout.
        log.warning("running several worker processes", extra={"workers": settings.workers})
        uvicorn.run("app.main:app_from_environment", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers, log_config=None,
                    access_log=False, timeout_graceful_shutdown=int(settings.grace_seconds))
        log.info("stopped")
        return 0

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            access_log=False, lifespan="on", server_header=False,
                            timeout_graceful_shutdown=settings.grace_seconds,  # type: ignore[arg-type]
                            loop="auto", http="auto")  # uvloop and httptools when installed
    server = Server(config, settings, app.fallback.state.store)
    server.run()
    if server.started or server.should_exit:
        log.info("stopped")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
