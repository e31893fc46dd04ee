"""``AUDIT = [ MODE, DESTINATION, PATH, MAX_SIZE, KEEP, FSYNC, WRITE_DELAY, FACILITY ]``
in oned.conf."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODES = ("off", "writes", "all")
DESTINATIONS = ("file", "syslog")
FACILITIES = (
    "auth", "authpriv", "daemon", "user",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip


@dataclass(frozen=True)
class AuditSettings:
    """What to record and where. Without an AUDIT section every call but the
    read-only ones is recorded in ``var/audit.log``."""

    mode: str = "writes"
    destination: str = "file"
    path: str = "audit.log"  # relative to the var directory
    max_size_mb: int = 100  # rotate when the file would grow past this (0: never)
    keep: int = 0  # rotated files to keep (0: all)
    fsync: float = 1.0  # seconds between fsyncs; 0 after every record; -1 never
    write_delay: float = 0.2  # seconds a record waits in the journal for its batch
    facility: str = "authpriv"

    @classmethod
    def from_vector(cls, vec: dict[str, str] | None) -> AuditSettings:
        """Read the AUDIT vector; raises ``ValueError`` naming a bad value."""
        if not vec:
            return cls()
        values = {k.upper(): v.strip() for k, v in vec.items()}
        mode = (values.get("MODE") or cls.mode).lower()
        if mode not in MODES:
            raise ValueError(f"AUDIT MODE must be one of {', '.join(MODES)}, got {mode!r}")
        dest = (values.get("DESTINATION") or cls.destination).lower()
        if dest not in DESTINATIONS:
            raise ValueError(
                f"AUDIT DESTINATION must be one of {', '.join(DESTINATIONS)}, got {dest!r}"
            )
        facility = (values.get("FACILITY") or cls.facility).lower()
        if facility not in FACILITIES:
            raise ValueError(f"AUDIT FACILITY must be one of {', '.join(FACILITIES)}")
        return cls(
            mode=mode,
            destination=dest,
            path=values.get("PATH") or cls.path,
            max_size_mb=int(_number(values, "MAX_SIZE", cls.max_size_mb, integer=True)),
            keep=int(_number(values, "KEEP", cls.keep, integer=True)),
            fsync=_number(values, "FSYNC", cls.fsync, integer=False),
            write_delay=_write_delay(values),
            facility=facility,
        )

    def file_path(self, var: Path) -> Path:
        """PATH, relative to the var directory unless absolute."""
        path = Path(self.path)
        return path if path.is_absolute() else var / path


def _number(values: dict[str, str], key: str, default: float, *, integer: bool) -> float:
    raw = values.get(key)
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError as exc:
        raise ValueError(f"AUDIT {key} must be a number, got {raw!r}") from exc
    if key != "FSYNC" and value < 0:
        raise ValueError(f"AUDIT {key} must not be negative, got {raw!r}")
    return value


def _write_delay(values: dict[str, str]) -> float:
    delay = _number(values, "WRITE_DELAY", AuditSettings.write_delay, integer=False)
    if not 0.001 <= delay <= 10:
        raise ValueError(f"AUDIT WRITE_DELAY must be 0.001 to 10 seconds, got {delay:g}")
    return delay
