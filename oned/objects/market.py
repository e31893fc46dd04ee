"""The MARKETPLACE object (mirrors ``MarketPlace.h``/``MarketPlace.cc``).

A marketplace holds the ids of its apps, its capacity as the driver's MONITOR reports
it, and the behaviour of its MARKET_MAD from oned.conf's ``MARKET_MAD_CONF``:
``REQUIRED_ATTRS``, ``APP_ACTIONS`` (create, delete, monitor) and ``PUBLIC``.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from oned.objects.base import (
    Permissions,
    esc,
    ids_of,
    ids_xml,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template
from oned.template.template import cdata

if TYPE_CHECKING:
    from oned.config import OnedConfig

ENABLED = 0
DISABLED = 1
STATE_NAMES = ("ENABLED", "DISABLED")

#: ``MarketPlaceApp::Action`` names oned.conf's APP_ACTIONS may list.
ACTIONS = ("create", "delete", "monitor")

#: Marketplaces 0..99 are oned's own; user marketplaces start at 100.
FIRST_USER_OID = 100


@dataclass
class MarketPlace:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    state: int = ENABLED
    market_mad: str = ""
    zone_id: int = 0
    total_mb: int = 0
    free_mb: int = 0
    used_mb: int = 0
    apps: set[int] = field(default_factory=set)
    perms: Permissions = field(default_factory=Permissions)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "marketplace_pool"
    ROOT: ClassVar[str] = "MARKETPLACE"
    #: What ``MarketPlace::from_xml`` cannot do without (``updatedb`` refuses less).
    REQUIRED: ClassVar[tuple[str, ...]] = tuple(
        "ID UID GID UNAME GNAME NAME MARKET_MAD ZONE_ID TOTAL_MB FREE_MB USED_MB "
        "MARKETPLACEAPPS PERMISSIONS TEMPLATE".split()
    )

    def to_xml(self) -> str:
        return (
            f"<MARKETPLACE><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"<STATE>{self.state}</STATE><MARKET_MAD>{cdata(self.market_mad)}</MARKET_MAD>"
            f"<ZONE_ID>{cdata(str(self.zone_id))}</ZONE_ID><TOTAL_MB>{self.total_mb}</TOTAL_MB>"
            f"<FREE_MB>{self.free_mb}</FREE_MB><USED_MB>{self.used_mb}</USED_MB>"
            f"{ids_xml('MARKETPLACEAPPS', self.apps)}{self.perms.to_xml()}"
            f"{self.template.to_xml()}</MARKETPLACE>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> MarketPlace:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID", -1),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            state=int_of(root, "STATE"),
            market_mad=text_of(root, "MARKET_MAD"),
            zone_id=int_of(root, "ZONE_ID", -1),
            total_mb=int_of(root, "TOTAL_MB"),
            free_mb=int_of(root, "FREE_MB"),
            used_mb=int_of(root, "USED_MB"),
            apps=set(ids_of(root, "MARKETPLACEAPPS")),
            template=template_of(root),
        )

    def copy(self) -> MarketPlace:
        return _copy.deepcopy(self)


def market_conf(config: OnedConfig, mad: str) -> dict[str, str] | None:
    """``Nebula::get_market_conf_attribute``: the MARKET_MAD_CONF vector of ``mad``."""
    found = None
    for vec in config.vectors("MARKET_MAD_CONF"):
        if vec.get("NAME") == mad:
            found = vec
    return found


def supported_actions(config: OnedConfig, mad: str) -> set[str]:
    """``MarketPlace::from_xml``'s supported actions: APP_ACTIONS, else oned's defaults
    for http/s3 (create, monitor, delete) and one (create, monitor)."""
    conf = market_conf(config, mad)
    text = (conf or {}).get("APP_ACTIONS", "")
    if not text:
        if mad in ("http", "s3"):
            text = "create, monitor, delete"
        elif mad == "one":
            text = "create, monitor"
    return {a.strip() for a in text.split(",") if a.strip() in ACTIONS}


def is_public(config: OnedConfig, mad: str) -> bool:
    """``MarketPlace::is_public``: PUBLIC of the driver's MARKET_MAD_CONF."""
    conf = market_conf(config, mad) or {}
    return conf.get("PUBLIC", "").strip().upper() in ("YES", "TRUE")


def check_market_mad(config: OnedConfig, mad: str, tmpl: Template) -> str | None:
    """``MarketPlace::set_market_mad``: None, or why the template cannot use ``mad``."""
    conf = market_conf(config, mad)
    if conf is None:
        return f'MARKET_MAD_CONF named "{mad}" is not defined in oned.conf'
    for raw in conf.get("REQUIRED_ATTRS", "").split(","):
        attr = raw.strip().upper()
        if attr and not (tmpl.get(attr) or ""):
            return f'MarketPlace template is missing the "{attr}" attribute or it\'s empty.'
    return None
