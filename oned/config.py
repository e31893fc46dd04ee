"""oned.conf loading (mirrors ``OpenNebulaTemplate``/``NebulaTemplate``).

The file is parsed by the same template parser the API uses. ``OnedConfig`` keeps the
whole template (for ``one.system.config`` and ``var/config``) plus typed values for the
settings the core reads.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oned.audit.settings import AuditSettings
from oned.locations import Locations, packaged_share
from oned.metrics.settings import MetricsSettings
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
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: MetricsSettings | None = None
    #: ``[items, len(items), {name: [single values]}]``: lookups without a scan of the
    #: whole file per call, rebuilt whenever the template's items change.
    _singles: list[Any] = field(
        default_factory=lambda: [None, -1, {}], init=False, repr=False, compare=False
    )

    def _single_values(self) -> dict[str, list[str]]:
        items = self.template.items
        cache = self._singles
        if cache[0] is not items or cache[1] != len(items):
            values: dict[str, list[str]] = {}
            for n, v in items:
                if isinstance(v, str):
                    values.setdefault(n, []).append(v)
            cache[:] = [items, len(items), values]
        found: dict[str, list[str]] = cache[2]
        return found

    def get(self, name: str, default: str | None = None) -> str | None:
        """``template.get_last``: the last single attribute called ``name``."""
        found = self._single_values().get(name.upper())
        return found[-1] if found else default

    def all_of(self, name: str) -> list[str]:
        """Every single attribute called exactly ``name``, in file order."""
        return list(self._single_values().get(name, ()))

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
        try:
            audit = AuditSettings.from_vector(tmpl.get_vector("AUDIT"))
            metrics = MetricsSettings.from_vector(tmpl.get_vector("METRICS"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
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
            audit=audit,
            metrics=metrics,
        )


_VM_MANAGE_OPERATIONS = (
    "undeploy, hold, release, stop, suspend, resume, reboot, poweroff, disk-attach, "
    "nic-attach, disk-snapshot, terminate, disk-resize, snapshot, updateconf, rename, "
    "resize, update, disk-saveas, sched-action, sg-attach, pci-attach, exec, vmgroup"
)

# ``OpenNebulaTemplate::set_conf_default``: what oned adds for a name the file lacks.
_DEFAULTS: tuple[tuple[str, str | dict[str, str]], ...] = (
    ("MANAGER_TIMER", "15"),
    ("MONITORING_INTERVAL_MARKET", "600"),
    ("MONITORING_INTERVAL_DATASTORE", "300"),
    ("DS_MONITOR_VM_DISK", "10"),
    ("PORT", "2633"),
    ("LISTEN_ADDRESS", "0.0.0.0"),
    ("GRPC_PORT", "2634"),
    ("GRPC_LISTEN_ADDRESS", "0.0.0.0"),
    ("SCRIPTS_REMOTE_DIR", "/var/tmp/one"),  # noqa: S108 - a path on the hosts
    ("VM_SUBMIT_ON_HOLD", "NO"),
    ("API_LIST_ORDER", "DESC"),
    ("SHOWBACK_ONLY_RUNNING", "NO"),
    ("CONTEXT_RESTRICTED_DIRS", "/etc"),
    ("CONTEXT_SAFE_DIRS", ""),
    ("CONTEXT_ALLOW_ETH_UPDATES", "NO"),
    ("DB", {"BACKEND": "sqlite", "TIMEOUT": "2500"}),
    ("LOG", {"SYSTEM": "file", "DEBUG_LEVEL": "3", "USE_VMS_LOCATION": "NO"}),
    ("VNC_PORTS", {"RESERVED": "", "START": "5900"}),
    ("MAX_BACKUPS", "5"),
    ("MAX_BACKUPS_HOST", "2"),
    (
        "FEDERATION",
        {
            "MODE": "STANDALONE",
            "ZONE_ID": "0",
            "SERVER_ID": "-1",
            "MASTER_ONED": "",
            "MASTER_ONED_GRPC": "",
        },
    ),
    (
        "RAFT",
        {
            "LOG_RETENTION": "500000",
            "LOG_PURGE_TIMEOUT": "600",
            "ELECTION_TIMEOUT_MS": "1500",
            "BROADCAST_TIMEOUT_MS": "500",
            "XMLRPC_TIMEOUT_MS": "100",
            "LIMIT_PURGE": "100000",
        },
    ),
    ("DEFAULT_COST", {"CPU_COST": "0", "MEMORY_COST": "0", "DISK_COST": "0"}),
    ("MAX_CONN", "15"),
    ("MAX_CONN_BACKLOG", "15"),
    ("KEEPALIVE_TIMEOUT", "15"),
    ("KEEPALIVE_MAX_CONN", "30"),
    ("TIMEOUT", "15"),
    ("RPC_LOG", "NO"),
    ("MESSAGE_SIZE", "1073741824"),
    ("LOG_CALL_FORMAT", "Req:%i UID:%u IP:%A %m invoked %l"),
    ("LOG_RESULT_LENGTH", "20"),
    ("MAC_PREFIX", "02:00"),
    ("MAC_GLOBAL_SPACE", "NO"),
    ("NETWORK_SIZE", "254"),
    ("VLAN_IDS", {"RESERVED": "0, 1, 4095", "START": "2"}),
    ("VXLAN_IDS", {"START": "2"}),
    ("PCI_PASSTHROUGH_BUS", "0x01"),
    ("DATASTORE_LOCATION", ""),  # <var>/ + /datastores, set from the locations
    ("DATASTORE_CAPACITY_CHECK", "YES"),
    ("DEFAULT_IMAGE_TYPE", "OS"),
    ("DEFAULT_IMAGE_PERSISTENT", ""),
    ("DEFAULT_IMAGE_PERSISTENT_NEW", ""),
    ("DEFAULT_DEVICE_PREFIX", "hd"),
    ("VM_SNAPSHOT_FACTOR", "0"),
    ("DEFAULT_AUTH", "default"),
    ("SESSION_EXPIRATION_TIME", "0"),
    ("ENABLE_OTHER_PERMISSIONS", "YES"),
    ("DEFAULT_UMASK", "177"),
    (
        "VM_ADMIN_OPERATIONS",
        "migrate, delete, recover, retry, deploy, resched, backup, restore",
    ),
    ("VM_MANAGE_OPERATIONS", _VM_MANAGE_OPERATIONS),
    ("VM_USE_OPERATIONS", ""),
    ("HOOK_LOG_CONF", {"LOG_RETENTION": "10"}),
    ("SCHED_MAD", {"EXECUTABLE": "one_sched", "ARGUMENTS": "-t 15 -p rank -o one_drs"}),
    ("SCHED_MAX_WND_TIME", "30"),
    ("SCHED_MAX_WND_LENGTH", "7"),
    ("SCHED_RETRY_TIME", "60"),
    ("MAX_ACTIONS_PER_HOST", "2"),
    ("MAX_ACTIONS_PER_CLUSTER", "10"),
    ("ACTION_TIMEOUT", "120"),
    ("LIVE_RESCHEDS", "0"),
    ("COLD_MIGRATE_MODE", "0"),
    ("DRS_INTERVAL", "600"),
)


def _tm(name: str, ln: str, clone: str, shared: str, mig: str, live: str, snap: str, drv: str
        ) -> dict[str, str]:  # fmt: skip
    return {
        "NAME": name,
        "LN_TARGET": ln,
        "CLONE_TARGET": clone,
        "SHARED": shared,
        "DS_MIGRATE": mig,
        "DS_LIVE_MIGRATE": live,
        "DS_MIGRATE_SNAP": snap,
        "DRIVER": drv,
    }


def _auth(name: str, change: str, groups: str, admin: str, token: str) -> dict[str, str]:
    return {
        "NAME": name,
        "PASSWORD_CHANGE": change,
        "DRIVER_MANAGED_GROUPS": groups,
        "DRIVER_MANAGED_GROUP_ADMIN": admin,
        "MAX_TOKEN_TIME": token,
    }


# ``set_multiple_conf_default``: per driver NAME, added when the file has no vector of
# that section with that NAME.
_MULTIPLE_DEFAULTS: tuple[tuple[str, tuple[dict[str, str], ...]], ...] = (
    (
        "TM_MAD_CONF",
        (
            _tm("dummy", "NONE", "SYSTEM", "YES", "YES", "YES", "YES", ""),
            _tm("lvm", "NONE", "SELF", "YES", "YES", "NO", "NO", ""),
            _tm("fs_lvm", "SYSTEM", "SYSTEM", "YES", "YES", "NO", "NO", "raw"),
            _tm("fs_lvm_ssh", "SYSTEM", "SYSTEM", "YES", "YES", "YES", "NO", "raw"),
            _tm("shared", "NONE", "SYSTEM", "YES", "YES", "YES", "YES", ""),
            _tm("qcow2", "NONE", "SYSTEM", "YES", "YES", "YES", "YES", "qcow2"),
            _tm("ssh", "SYSTEM", "SYSTEM", "NO", "YES", "YES", "YES", ""),
            _tm("local", "SYSTEM", "SYSTEM", "NO", "YES", "YES", "YES", ""),
            _tm("ceph", "NONE", "SELF", "YES", "NO", "NO", "NO", "raw"),
            _tm("dev", "NONE", "NONE", "YES", "NO", "NO", "NO", ""),
        ),
    ),
    (
        "DS_MAD_CONF",
        tuple(
            {"NAME": n, "REQUIRED_ATTRS": r, "PERSISTENT_ONLY": p}
            for n, r, p in (
                ("dev", "DISK_TYPE", "YES"),
                ("iscsi_libvirt", "DISK_TYPE,ISCSI_HOST", "YES"),
                ("dummy", "", "NO"),
                ("fs", "", "NO"),
                ("lvm", "DISK_TYPE", "NO"),
                ("shared", "", "NO"),
                ("ssh", "", "NO"),
                ("vmfs", "BRIDGE_LIST", "NO"),
                ("ceph", "DISK_TYPE,BRIDGE_LIST,CEPH_HOST,CEPH_USER,CEPH_SECRET", "NO"),
            )
        ),
    ),
    (
        "MARKET_MAD_CONF",
        tuple(
            {"NAME": n, "REQUIRED_ATTRS": r, "APP_ACTIONS": a}
            for n, r, a in (
                ("one", "", "monitor"),
                ("http", "BASE_URL,PUBLIC_DIR", "create, delete, monitor"),
                ("s3", "ACCESS_KEY_ID,SECRET_ACCESS_KEY,REGION,BUCKET", "create, delete, monitor"),
                ("linuxcontainers", "", "monitor"),
            )
        ),
    ),
    (
        "AUTH_MAD_CONF",
        (
            _auth("core", "YES", "NO", "NO", "-1"),
            _auth("public", "NO", "NO", "NO", "-1"),
            _auth("ssh", "YES", "NO", "NO", "-1"),
            _auth("x509", "NO", "NO", "NO", "-1"),
            _auth("ldap", "YES", "YES", "YES", "86400"),
            _auth("saml", "YES", "YES", "YES", "86400"),
            _auth("server_cipher", "NO", "NO", "NO", "-1"),
            _auth("server_x509", "NO", "NO", "NO", "-1"),
        ),
    ),
    (
        "VN_MAD_CONF",
        tuple(
            {"NAME": n, "BRIDGE_TYPE": b}
            for n, b in (
                ("dummy", "linux"),
                ("802.1Q", "linux"),
                ("fw", "linux"),
                ("ovswitch", "openvswitch"),
                ("vxlan", "linux"),
                ("ovswitch_vxlan", "openvswitch"),
                ("bridge", "linux"),
                ("elastic", "linux"),
                ("nodeport", "linux"),
            )
        ),
    ),
)


def add_defaults(tmpl: Template, locations: Locations) -> None:
    """``NebulaTemplate::load_configuration``: every default whose name the file does
    not use, then the per-driver defaults whose NAME the file does not configure.
    They come after the file's own attributes of the same name, as in oned's map."""
    present = set(tmpl.names())
    for name, default in _DEFAULTS:
        if name in present:
            continue
        value = dict(default) if isinstance(default, dict) else default
        if name == "DATASTORE_LOCATION":
            value = f"{locations.var}//datastores"  # oned joins "<var>/" and "/datastores"
        tmpl.items.append((name, value))
    for section, vectors in _MULTIPLE_DEFAULTS:
        configured = {v.get("NAME") for v in tmpl.vectors(section)}
        tmpl.items.extend((section, dict(v)) for v in vectors if v["NAME"] not in configured)


def parse_config_text(text: str, locations: Locations, port: int | None = None) -> OnedConfig:
    try:
        tmpl = parse_text(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"Error parsing configuration file: {exc}") from exc
    add_defaults(tmpl, locations)
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
