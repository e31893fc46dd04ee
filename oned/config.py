"""oned.conf loading (mirrors ``OpenNebulaTemplate``/``NebulaTemplate``).

The file is parsed by the same template parser the API uses. ``OnedConfig`` keeps the
whole template (for ``one.system.config`` and ``var/config``) plus typed values for the
settings the core reads.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from oned.locations import Locations, packaged_share
from oned.template import Template, TemplateSyntaxError, parse_text


class ConfigError(Exception):
    """oned.conf is missing, unreadable or malformed."""


def _int(tmpl: Template, name: str, default: int) -> int:
    raw = tmpl.get_last(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _yes(tmpl: Template, name: str, default: bool) -> bool:
    raw = tmpl.get_last(name)
    if raw is None or raw == "":
        return default
    return raw.strip().upper() in ("YES", "TRUE", "1")


def _vec_int(vec: dict[str, str] | None, key: str, default: int) -> int:
    if not vec or not vec.get(key):
        return default
    try:
        return int(vec[key])
    except ValueError as exc:
        raise ConfigError(f"{key} must be an integer, got {vec[key]!r}") from exc


@dataclass(frozen=True)
class OnedConfig:
    """Parsed oned.conf plus the typed settings the core uses."""

    template: Template
    locations: Locations
    port: int = 2633
    grpc_port: int = 2634
    listen_address: str = "0.0.0.0"
    max_conn: int = 15
    keepalive_timeout: int = 15
    keepalive_max_conn: int = 30
    timeout: int = 15
    message_size: int = 1073741824
    log_call_format: str = "Req:%i UID:%u IP:%A %m invoked %l20"
    api_list_order_desc: bool = True
    session_expiration_time: int = 900
    default_umask: int = 0o177
    enable_other_permissions: bool = True
    default_auth: str = "default"
    log_system: str = "file"
    debug_level: int = 3
    db_backend: str = "sqlite"
    db_timeout_ms: int = 2500
    zone_id: int = 0
    manager_timer: int = 15
    auth_mad_conf: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.template.get_last(name, default)

    def vectors(self, name: str) -> list[dict[str, str]]:
        return self.template.vectors(name)

    def max_token_time(self, driver: str) -> int:
        """MAX_TOKEN_TIME of an auth driver (-1 unlimited, 0 tokens disabled)."""
        conf = self.auth_mad_conf.get(driver, {})
        try:
            return int(conf.get("MAX_TOKEN_TIME", "-1"))
        except ValueError:
            return -1

    def password_change(self, driver: str) -> bool:
        conf = self.auth_mad_conf.get(driver)
        return conf is None or conf.get("PASSWORD_CHANGE", "YES").upper() == "YES"

    @classmethod
    def from_template(
        cls, tmpl: Template, locations: Locations, port: int | None = None
    ) -> OnedConfig:
        log = tmpl.get_vector("LOG") or {}
        db = tmpl.get_vector("DB") or {}
        fed = tmpl.get_vector("FEDERATION") or {}
        if port is not None:
            tmpl = tmpl.copy()
            tmpl.set("PORT", str(port))
        umask_raw = tmpl.get_last("DEFAULT_UMASK") or "177"
        try:
            umask = int(umask_raw, 8)
        except ValueError as exc:
            raise ConfigError(f"DEFAULT_UMASK must be octal, got {umask_raw!r}") from exc
        backend = db.get("BACKEND", "sqlite").lower()
        if backend != "sqlite":
            raise ConfigError("DB BACKEND must be sqlite")
        return cls(
            template=tmpl,
            locations=locations,
            port=_int(tmpl, "PORT", 2633),
            grpc_port=_int(tmpl, "GRPC_PORT", 2634),
            listen_address=tmpl.get_last("LISTEN_ADDRESS") or "0.0.0.0",
            max_conn=_int(tmpl, "MAX_CONN", 15),
            keepalive_timeout=_int(tmpl, "KEEPALIVE_TIMEOUT", 15),
            keepalive_max_conn=_int(tmpl, "KEEPALIVE_MAX_CONN", 30),
            timeout=_int(tmpl, "TIMEOUT", 15),
            message_size=_int(tmpl, "MESSAGE_SIZE", 1073741824),
            log_call_format=tmpl.get_last("LOG_CALL_FORMAT") or "",
            api_list_order_desc=(tmpl.get_last("API_LIST_ORDER") or "DESC").upper() != "ASC",
            session_expiration_time=_int(tmpl, "SESSION_EXPIRATION_TIME", 0),
            default_umask=umask,
            enable_other_permissions=_yes(tmpl, "ENABLE_OTHER_PERMISSIONS", True),
            default_auth=tmpl.get_last("DEFAULT_AUTH") or "default",
            log_system=log.get("SYSTEM", "file").lower(),
            debug_level=_vec_int(log, "DEBUG_LEVEL", 3),
            db_backend=backend,
            db_timeout_ms=_vec_int(db, "TIMEOUT", 2500),
            zone_id=_vec_int(fed, "ZONE_ID", 0),
            manager_timer=_int(tmpl, "MANAGER_TIMER", 15),
            auth_mad_conf={v["NAME"]: v for v in tmpl.vectors("AUTH_MAD_CONF") if "NAME" in v},
        )


def parse_config_text(text: str, locations: Locations, port: int | None = None) -> OnedConfig:
    try:
        tmpl = parse_text(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"Error parsing configuration file: {exc}") from exc
    return OnedConfig.from_template(tmpl, locations, port)


def load_config(locations: Locations, port: int | None = None) -> OnedConfig:
    """Read ``etc/oned.conf``, creating it from the shipped default when missing."""
    path = locations.oned_conf
    if not path.exists():
        default = packaged_share() / "etc" / "oned.conf"
        if not default.is_file():
            raise ConfigError(f"Missing {path} and no default configuration at {default}")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(default, path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    return parse_config_text(text, locations, port)
