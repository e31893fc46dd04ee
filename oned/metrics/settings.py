"""``METRICS = [ LISTEN_ADDRESS, PORT ]`` in oned.conf (no such section: no endpoint)."""

from __future__ import annotations

from dataclasses import dataclass

#: opennebula-exporter's port.
DEFAULT_PORT = 9925
DEFAULT_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class MetricsSettings:
    """Where ``/metrics`` is served."""

    listen_address: str = DEFAULT_ADDRESS
    port: int = DEFAULT_PORT

    @classmethod
    def from_vector(cls, vec: dict[str, str] | None) -> MetricsSettings | None:
        """Read the METRICS vector (None when absent); raises ``ValueError`` naming a
        bad value."""
        if vec is None:
            return None
        values = {k.upper(): v.strip() for k, v in vec.items()}
        raw = values.get("PORT") or str(DEFAULT_PORT)
        try:
            port = int(raw)
        except ValueError as exc:
            raise ValueError(f"METRICS PORT must be an integer, got {raw!r}") from exc
        if not 0 <= port <= 65535:
            raise ValueError(f"METRICS PORT must be between 0 and 65535, got {raw!r}")
        return cls(values.get("LISTEN_ADDRESS") or DEFAULT_ADDRESS, port)
