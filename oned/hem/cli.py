"""``oned-hem``: command line, configuration file, logging and signals.

Settings come from onehem-server's configuration file (``etc/onehem-server.conf``, its
``:key: value`` lines), then the command line. oned's endpoint is ``--endpoint``,
``$ONE_XMLRPC`` or ``http://localhost:2633/RPC2``; the credential ``--session``, then the
files OpenNebula's tools read (``$ONE_AUTH``, ``~/.one/one_auth``) and the oneadmin
credential oned writes in ``var/.one/one_auth``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

from oned.hem.client import OnedClient, default_endpoint
from oned.hem.service import HookExecutionManager, Settings
from oned.locations import Locations

#: onehem-server's ``debug_level`` (0 error .. 3 debug).
LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)

_INT_KEYS = ("concurrency", "debug_level", "per_hook", "max_output", "max_pending")
_FLOAT_KEYS = ("reload_interval", "ack_timeout", "kill_grace", "stop_timeout")


def read_conf(path: Path) -> dict[str, str]:
    """The ``:key: value`` (or ``key: value``) lines of onehem-server.conf."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("---"):
            continue
        key, sep, value = line.lstrip(":").partition(":")
        if sep:
            values[key.strip()] = value.strip().strip("'\"")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oned-hem", description="Hook Execution Manager")
    p.add_argument("--endpoint", help="oned's XML-RPC endpoint (default $ONE_XMLRPC)")
    p.add_argument("--session", help="user:password (default $ONE_AUTH, ~/.one/one_auth)")
    p.add_argument("--conf", type=Path, help="onehem-server.conf (default etc/)")
    p.add_argument("--subscriber", help="the bus, default tcp://127.0.0.1:2101")
    p.add_argument("--replier", help="the result socket, default tcp://127.0.0.1:2102")
    p.add_argument("--concurrency", type=int, help="hooks running at once (10)")
    p.add_argument("--per-hook", type=int, help="executions of one hook at once")
    p.add_argument("--hook-path", help="base of relative local COMMANDs")
    p.add_argument("--remote-hook-path", help="base of relative remote COMMANDs")
    p.add_argument("--max-output", type=int, help="bytes of stdout/stderr kept per run")
    p.add_argument("--ssh", help="ssh program for REMOTE hooks")
    p.add_argument("--reload-interval", type=float, help="seconds between hook reloads")
    p.add_argument("--log", help="log file, '-' for stderr (default var/onehem.log)")
    p.add_argument("--debug-level", type=int, choices=range(4), help="0 error .. 3 debug")
    return p


def settings_from(args: argparse.Namespace, conf: dict[str, str], loc: Locations) -> Settings:
    s = Settings(hook_base_path=str(loc.remotes / "hooks"))
    mapping = {
        "hook_base_path": "hook_base_path",
        "remote_hook_base_path": "remote_hook_base_path",
        "subscriber_endpoint": "subscriber_endpoint",
        "replier_endpoint": "replier_endpoint",
    }
    for key, attr in mapping.items():
        if conf.get(key):
            setattr(s, attr, conf[key].replace("localhost", "127.0.0.1"))
    for key in _INT_KEYS:
        if key in conf and key != "debug_level" and conf[key].isdigit():
            setattr(s, key, int(conf[key]))
    for key in _FLOAT_KEYS:
        with contextlib.suppress(ValueError):
            if key in conf:
                setattr(s, key, float(conf[key]))
    flags = {
        "subscriber": "subscriber_endpoint",
        "replier": "replier_endpoint",
        "concurrency": "concurrency",
        "per_hook": "per_hook",
        "hook_path": "hook_base_path",
        "remote_hook_path": "remote_hook_base_path",
        "max_output": "max_output",
        "ssh": "ssh",
        "reload_interval": "reload_interval",
    }
    for flag, attr in flags.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(s, attr, value)
    return s


def setup_logging(target: str, level: int) -> None:
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(target)
        except OSError:
            handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s [%(levelname).1s]: %(message)s")
    formatter.converter = time.localtime
    formatter.default_time_format = "%a %b %d %H:%M:%S %Y"
    formatter.default_msec_format = None
    handler.setFormatter(formatter)
    root = logging.getLogger("oned.hem")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


async def serve(hem: HookExecutionManager) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(hem.run())
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, task.cancel)
    loop.add_signal_handler(signal.SIGHUP, hem.request_reload)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    loc = Locations.from_env()
    conf = read_conf(args.conf or loc.etc / "onehem-server.conf")
    level = args.debug_level
    if level is None:
        level = int(conf["debug_level"]) if conf.get("debug_level", "").isdigit() else 2
    setup_logging(args.log or str(loc.log / "onehem.log"), LEVELS[min(level, 3)])
    settings = settings_from(args, conf, loc)
    client = OnedClient(args.endpoint or default_endpoint(), session=args.session)
    hem = HookExecutionManager(settings, client)
    logging.getLogger("oned.hem").info(
        "oned-hem started: oned %s, bus %s, results %s",
        client.endpoint, settings.subscriber_endpoint, settings.replier_endpoint,
    )
    try:
        asyncio.run(serve(hem))
    finally:
        hem.ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
