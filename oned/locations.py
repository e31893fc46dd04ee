"""Filesystem layout of an installation (mirrors ``Nebula::init`` path set-up).

With ``$ONE_LOCATION`` set everything lives below it (``etc/``, ``var/``, ``lib/``,
``share/``); otherwise the system-wide paths ``/etc/one``, ``/var/lib/one``,
``/var/log/one``, ``/usr/lib/one`` and ``/usr/share/one`` are used.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Locations:
    """Where configuration, state, logs and driver programs live."""

    root: Path | None
    etc: Path
    var: Path
    log: Path
    lib: Path
    share: Path
    run: Path

    @property
    def oned_conf(self) -> Path:
        return self.etc / "oned.conf"

    @property
    def mads(self) -> Path:
        return self.lib / "mads"

    @property
    def remotes(self) -> Path:
        return self.var / "remotes"

    @property
    def oned_log(self) -> Path:
        return self.log / "oned.log"

    @property
    def pidfile(self) -> Path:
        return self.run / "oned.pid"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Locations:
        env = os.environ if environ is None else environ
        root = env.get("ONE_LOCATION")
        if root:
            base = Path(root)
            return cls(
                root=base,
                etc=base / "etc",
                var=base / "var",
                log=base / "var",
                lib=base / "lib",
                share=base / "share",
                run=base / "var",
            )
        return cls(
            root=None,
            etc=Path("/etc/one"),
            var=Path("/var/lib/one"),
            log=Path("/var/log/one"),
            lib=Path("/usr/lib/one"),
            share=Path("/usr/share/one"),
            run=Path("/var/run/one"),
        )


def packaged_share() -> Path:
    """The ``share/`` files shipped with the package (default oned.conf, schema)."""
    checkout = Path(__file__).resolve().parent.parent / "share"
    if (checkout / "etc" / "oned.conf").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "oned"
