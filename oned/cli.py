"""``oned`` command line (mirrors ``oned.cc``); the only importer of the global reactor.

``oned -f`` runs in the foreground (systemd ``Type=notify``); plain ``oned`` daemonizes
with python-daemon before the reactor is imported, writing a pidfile. ``--port N``
overrides PORT from oned.conf. SIGTERM and SIGINT stop the daemon; SIGHUP (``systemctl
reload``) applies oned.conf's AUDIT section again.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from oned import __version__
from oned.bootstrap import BootstrapError, Credentials
from oned.config import ConfigError, load_config
from oned.locations import Locations

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorThreads


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oned", description="OpenNebula core daemon (Python, wire-compatible)"
    )
    parser.add_argument("-f", "--foreground", action="store_true", help="do not daemonize")
    parser.add_argument("--port", type=int, default=None, help="XML-RPC port (overrides PORT)")
    parser.add_argument(
        "-i", "--init-db", action="store_true", help="create and bootstrap the database, then exit"
    )
    parser.add_argument("-v", "--version", action="store_true", help="print version and exit")
    return parser


def _print_credentials(stream: IO[str]) -> Any:
    def show(creds: Credentials) -> None:
        if creds.generated:
            stream.write(
                f"oneadmin credential (also saved to {creds.path}): "
                f"{creds.username}:{creds.password}\n"
            )
        else:
            stream.write(f"oneadmin credential read from {creds.path}\n")
        stream.flush()

    return show


def _log_stream(locations: Locations, system: str) -> IO[str]:
    if system == "std":
        return sys.stderr
    locations.log.mkdir(parents=True, exist_ok=True)
    return open(locations.oned_log, "a", encoding="utf-8", buffering=1)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"OpenNebula {__version__} (oned in Python)")
        return
    locations = Locations.from_env()
    try:
        config = load_config(locations, args.port)
    except ConfigError as exc:
        print(f"oned: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    if not args.foreground and not args.init_db:
        _daemonize(locations)
    sys.exit(_run(config, locations, args.foreground or args.init_db, args.init_db))


def _daemonize(locations: Locations) -> None:
    import daemon

    locations.run.mkdir(parents=True, exist_ok=True)
    locations.var.mkdir(parents=True, exist_ok=True)
    context = daemon.DaemonContext(working_directory=str(locations.var), umask=0o077)
    context.open()
    Path(locations.pidfile).write_text(f"{os.getpid()}\n", encoding="utf-8")


def _run(config: Any, locations: Locations, foreground: bool, init_only: bool = False) -> int:
    from twisted.internet import reactor

    from oned.app import OnedService
    from oned.log import logger, start_logging

    stream = _log_stream(locations, config.log_system)
    sink = start_logging(stream, config.debug_level, config.zone_id)
    log = logger("ONE")
    service = OnedService(
        config,
        reactor,
        on_credentials=_print_credentials(sys.stdout if foreground else stream),
        drivers_factory=_drivers_factory(),
        sink=sink,
        init_only=init_only,
    )
    status = {"code": 0}

    def started(_: object) -> None:
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        if init_only:
            reactor.stop()

    def failed(failure: Any) -> None:
        if failure.check(BootstrapError, ConfigError):
            log.error("Cannot start oned: {msg}", msg=failure.getErrorMessage())
        else:
            log.failure("Cannot start oned", failure=failure)
        print(f"oned: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        status["code"] = 1
        service.stop().addBoth(lambda _: reactor.stop())

    def go() -> None:
        threads = cast("IReactorThreads", reactor)
        signal.signal(signal.SIGHUP, lambda *_: threads.callFromThread(service.reload))
        service.startService()
        service.start().addCallbacks(started, failed)

    reactor.callWhenRunning(go)
    reactor.run()
    sink.flush()
    if not foreground:
        try:
            locations.pidfile.unlink()
        except OSError:
            pass
    return status["code"]


def _drivers_factory() -> Any:
    """The driver manager: every driver declared in oned.conf."""
    from oned.drivers.manager import DriverManager

    return DriverManager
