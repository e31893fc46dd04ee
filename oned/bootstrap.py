"""First-start bootstrap (mirrors the pool constructors run by ``Nebula::start``).

Creates exactly what OpenNebula creates in an empty database, in the same order so the
ids match: ACL rules, cluster 0 ``default``, groups 0 ``oneadmin`` and 1 ``users``,
users 0 (from ``$ONE_AUTH``) and 1 ``serveradmin``, datastores 0/1/2, zone 0 and the
default VDC rules. All of it is one transaction: a crash leaves an empty database.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from oned.core import Core
from oned.log import logger
from oned.objects.base import Permissions
from oned.objects.cluster import Cluster
from oned.objects.datastore import Datastore
from oned.objects.datastore_conf import init_datastore
from oned.objects.group import Group
from oned.objects.secgroup import default_secgroup
from oned.objects.user import CORE, SERVER_CIPHER, SERVERADMIN_NAME, User, sha256_hex
from oned.objects.vdc import ALL_RESOURCES, DEFAULT_VDC_ID, Vdc
from oned.objects.zone import Zone
from oned.pools.base import Unit
from oned.template import parse_str_or_xml

log = logger("ONE")

SERVER_AUTH_FILES = ("sunstone_auth", "onegate_auth", "oneflow_auth", "oneform_auth", "oneks_auth")

DEFAULT_RULES = [
    ("@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *"),
    ("* ZONE/* USE *"),
    ("* MARKETPLACE+MARKETPLACEAPP/* USE *"),
]
USERS_GID = 1
DEFAULT_VDC_DESCRIPTION = (
    "Every new group is added to this VDC. Use it to store default access rules for your "
    "groups. NOTE: You may need to remove a group from the default VDC before assigning it "
    "to other VDC."
)


class BootstrapError(Exception):
    """The first start cannot complete (bad ONE_AUTH, leftover credential files)."""


@dataclass(frozen=True)
class Credentials:
    """oneadmin's credentials and where they came from."""

    username: str
    password: str
    generated: bool
    path: Path


def one_auth_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("ONE_AUTH"):
        return Path(env["ONE_AUTH"])
    return Path(env.get("HOME", "/")) / ".one" / "one_auth"


def oneadmin_credentials(core: Core, environ: dict[str, str] | None = None) -> Credentials:
    """Read ``user:password`` from ``$ONE_AUTH``/``~/.one/one_auth`` or generate one."""
    path = one_auth_path(environ)
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if ":" not in text:
            raise BootstrapError(f"Wrong format in {path}, must be <username>:<password>")
        user, password = text.split(":", 1)
        if user == SERVERADMIN_NAME:
            raise BootstrapError(f"The name '{SERVERADMIN_NAME}' is reserved")
        if not user or not password:
            raise BootstrapError(f"Wrong format in {path}, must be <username>:<password>")
        return Credentials(user, password, False, path)
    password = secrets.token_hex(16)
    target = core.config.locations.var / ".one" / "one_auth"
    return Credentials("oneadmin", password, True, target)


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _datastore(core: Core, oid: int, text: str, location: str) -> Datastore:
    """``DatastorePool`` bootstrap: the default datastores, built like any other."""
    tmpl = parse_str_or_xml(text)
    name = tmpl.get("NAME") or ""
    tmpl.erase("NAME")
    store = Datastore(
        oid=oid,
        name=name,
        perms=Permissions.from_octal(0o777 & ~0o137),
        clusters={0},
        template=tmpl,
    )
    store.perms.group_u = 1
    init_datastore(store, core.config, location)
    return store


def datastore_location(core: Core) -> str:
    """``Nebula::get_ds_location``: DATASTORE_LOCATION, else ``<var>/datastores``."""
    return core.config.get("DATASTORE_LOCATION") or f"{core.config.locations.var}/datastores"


def stage_default_secgroup(core: Core, unit: Unit, oneadmin: User) -> None:
    """``SecurityGroupPool``: group 0 ``default`` owned by oneadmin, then ids from 100."""
    group = default_secgroup()
    group.uid, group.gid, group.uname, group.gname = (
        oneadmin.oid,
        oneadmin.gid,
        oneadmin.name,
        oneadmin.gname,
    )
    unit.add(core.secgroups, group)
    core.secgroups.set_last_oid(99)
    unit.sql(core.secgroups.control())


async def ensure_default_secgroup(core: Core) -> None:
    """An existing database whose security group pool never had a group gets group 0."""
    oneadmin = core.users.get(0)
    if not core.secgroups.is_empty() or oneadmin is None:
        return
    unit = core.unit()
    stage_default_secgroup(core, unit, oneadmin)
    await unit.commit("default security group")


def stage_default_vdc(core: Core, unit: Unit, groups: tuple[int, ...] = (USERS_GID,)) -> None:
    """``VdcPool``'s bootstrap: VDC 0 "default" with the users group and every cluster
    of the zone (its rules: hosts MANAGE, networks and datastores USE)."""
    from oned.api.vdc import stage_group_rules

    vdc = Vdc(DEFAULT_VDC_ID, "default", set(groups))
    vdc.template.add("DESCRIPTION", DEFAULT_VDC_DESCRIPTION)
    vdc.resources["CLUSTER"].add((core.config.zone_id, ALL_RESOURCES))
    for gid in groups:
        stage_group_rules(core, unit, vdc, gid, True)
    unit.add(core.vdcs, vdc)
    core.vdcs.set_last_oid(99)
    unit.sql(core.vdcs.control())


async def ensure_default_vdc(core: Core) -> None:
    """A database made before VDCs were kept gets VDC 0 with the groups it has (their
    rules are there already, as bootstrap and group allocation staged them)."""
    if not core.vdcs.is_empty() or core.groups.get(USERS_GID) is None:
        return
    unit = core.unit()
    groups = tuple(g.oid for g in core.groups.objects() if g.oid == USERS_GID or g.oid >= 100)
    stage_default_vdc(core, unit, groups)
    await unit.commit("default VDC")


def _stage_default_markets(core: Core, unit: Unit) -> None:
    from oned.api.market import stage_default_markets

    stage_default_markets(core, unit)


async def _ensure_default_markets(core: Core) -> None:
    from oned.api.market import ensure_default_markets

    await ensure_default_markets(core)


async def bootstrap(core: Core, environ: dict[str, str] | None = None) -> Credentials | None:
    """Populate an empty database; returns oneadmin's credentials when it did."""
    if not core.users.is_empty():
        await ensure_default_secgroup(core)
        await ensure_default_vdc(core)
        await _ensure_default_markets(core)
        return None
    creds = oneadmin_credentials(core, environ)
    var = core.config.locations.var
    server_files = [var / ".one" / name for name in SERVER_AUTH_FILES]
    for path in server_files:
        if path.exists():
            raise BootstrapError(
                f"Password file {path} already exists but OpenNebula is boostraping the "
                "database. Check your database configuration in oned.conf."
            )
    unit = core.unit()
    for text in DEFAULT_RULES:
        core.stage_rule(unit, text.format(zone=core.config.zone_id))

    cluster = Cluster(0, "default", datastores={0, 1, 2})
    cluster.template.add("RESERVED_CPU", "")
    cluster.template.add("RESERVED_MEM", "")
    unit.add(core.clusters, cluster)
    core.clusters.set_last_oid(99)
    unit.sql(core.clusters.control())
    for ds in (0, 1, 2):
        unit.sql(("INSERT INTO cluster_datastore_relation (cid, oid) VALUES (0, ?)", (ds,)))

    oneadmin_group = Group(0, "oneadmin", users={0, 1})
    users_group = Group(1, "users", users=set())
    users_group.template.add(
        "SUNSTONE",
        {
            "DEFAULT_VIEW": "cloud",
            "GROUP_ADMIN_DEFAULT_VIEW": "groupadmin",
            "GROUP_ADMIN_VIEWS": "groupadmin,cloud",
            "VIEWS": "cloud",
        },
    )
    unit.add(core.groups, oneadmin_group)
    unit.add(core.groups, users_group)
    core.groups.set_last_oid(99)
    unit.sql(core.groups.control())

    server_password = secrets.token_hex(16)
    oneadmin = User(0, creds.username, 0, "oneadmin", [0], sha256_hex(creds.password), CORE)
    serveradmin = User(
        1, SERVERADMIN_NAME, 0, "oneadmin", [0], sha256_hex(server_password), SERVER_CIPHER
    )
    for user in (oneadmin, serveradmin):
        user.template.add("TOKEN_PASSWORD", sha256_hex(secrets.token_hex(16)))
        unit.add(core.users, user)
    core.users.set_last_oid(1)
    unit.sql(core.users.control())

    location = datastore_location(core)
    for store in (
        _datastore(core, 0, "NAME=system\nTYPE=SYSTEM_DS\nTM_MAD=local", location),
        _datastore(core, 1, "NAME=default\nTYPE=IMAGE_DS\nDS_MAD=fs\nTM_MAD=local", location),
        _datastore(core, 2, "NAME=files\nTYPE=FILE_DS\nDS_MAD=fs\nTM_MAD=local", location),
    ):
        unit.add(core.datastores, store)
    core.datastores.set_last_oid(99)
    unit.sql(core.datastores.control())

    zone = Zone(0, "OpenNebula")
    zone.template.add("ENDPOINT", f"http://localhost:{core.config.port}/RPC2")
    zone.template.add("ENDPOINT_GRPC", f"localhost:{core.config.grpc_port}")
    unit.add(core.zones, zone)
    core.zones.set_last_oid(99)
    unit.sql(core.zones.control())

    stage_default_vdc(core, unit)
    _stage_default_markets(core, unit)

    stage_default_secgroup(core, unit, oneadmin)
    await unit.commit("bootstrap")

    for path in server_files:
        _write_secret(path, f"{SERVERADMIN_NAME}:{server_password}")
    if creds.generated and not creds.path.exists():
        _write_secret(creds.path, f"{creds.username}:{creds.password}")
    log.info("Bootstrap complete: oneadmin is {user}", user=creds.username)
    return creds
