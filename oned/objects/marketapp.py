"""The MARKETPLACEAPP object (mirrors ``MarketPlaceApp.h``/``MarketPlaceApp.cc``).

An app is an image (TYPE 1), a VM template (2) or a service template (3) stored in a
marketplace. Image apps are LOCKED while the market driver copies the image, then READY
(or ERROR); template apps are READY at once. Apps of public marketplaces are created,
updated and dropped by monitoring (``from_template64``).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from oned.drivers.message import b64decode
from oned.objects.base import (
    Lock,
    Permissions,
    esc,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template, TemplateSyntaxError
from oned.template.parser import parse_text
from oned.template.template import cdata

_D = TypeVar("_D", int, None)

INIT, READY, LOCKED, ERROR, DISABLED = range(5)
STATE_NAMES = ("INIT", "READY", "LOCKED", "ERROR", "DISABLED")

UNKNOWN, IMAGE, VMTEMPLATE, SERVICE_TEMPLATE = range(4)
TYPE_NAMES = ("UNKNOWN", "IMAGE", "VMTEMPLATE", "SERVICE_TEMPLATE")


def str_to_type(text: str) -> int:
    """``MarketPlaceApp::str_to_type``."""
    upper = text.upper()
    return TYPE_NAMES.index(upper) if upper in TYPE_NAMES[1:] else UNKNOWN


def _int(text: str, default: _D) -> int | _D:
    try:
        return int(text.strip())
    except ValueError:
        return default


@dataclass
class MarketPlaceApp:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    regtime: int = 0
    zone_id: int = 0
    origin_id: int = -1
    source: str = ""
    md5: str = ""
    size: int = 0
    description: str = ""
    version: str = ""
    format: str = ""
    apptemplate64: str = ""
    market_id: int = -1
    market_name: str = ""
    state: int = INIT
    type: int = IMAGE
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "marketplaceapp_pool"
    ROOT: ClassVar[str] = "MARKETPLACEAPP"
    #: What ``MarketPlaceApp::from_xml`` cannot do without (``updatedb`` refuses less).
    REQUIRED: ClassVar[tuple[str, ...]] = tuple(
        "ID UID GID UNAME GNAME NAME REGTIME SOURCE ORIGIN_ID ZONE_ID STATE TYPE "
        "DESCRIPTION SIZE VERSION MD5 FORMAT APPTEMPLATE64 MARKETPLACE MARKETPLACE_ID "
        "PERMISSIONS TEMPLATE".split()
    )

    def to_xml(self) -> str:
        return (
            f"<MARKETPLACEAPP><ID>{self.oid}</ID>{owner_xml(self)}{self.lock.to_xml()}"
            f"<REGTIME>{self.regtime}</REGTIME><NAME>{esc(self.name)}</NAME>"
            f"<ZONE_ID>{cdata(str(self.zone_id))}</ZONE_ID>"
            f"<ORIGIN_ID>{cdata(str(self.origin_id))}</ORIGIN_ID>"
            f"<SOURCE>{cdata(self.source)}</SOURCE><MD5>{cdata(self.md5)}</MD5>"
            f"<SIZE>{self.size}</SIZE><DESCRIPTION>{cdata(self.description)}</DESCRIPTION>"
            f"<VERSION>{cdata(self.version)}</VERSION><FORMAT>{cdata(self.format)}</FORMAT>"
            f"<APPTEMPLATE64>{cdata(self.apptemplate64)}</APPTEMPLATE64>"
            f"<MARKETPLACE_ID>{self.market_id}</MARKETPLACE_ID>"
            f"<MARKETPLACE>{esc(self.market_name)}</MARKETPLACE><STATE>{self.state}</STATE>"
            f"<TYPE>{self.type}</TYPE>{self.perms.to_xml()}{self.template.to_xml()}"
            "</MARKETPLACEAPP>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> MarketPlaceApp:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID", -1),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            regtime=int_of(root, "REGTIME", -1),
            zone_id=int_of(root, "ZONE_ID", -1),
            origin_id=int_of(root, "ORIGIN_ID", -1),
            source=text_of(root, "SOURCE"),
            md5=text_of(root, "MD5"),
            size=int_of(root, "SIZE", -1),
            description=text_of(root, "DESCRIPTION"),
            version=text_of(root, "VERSION"),
            format=text_of(root, "FORMAT"),
            apptemplate64=text_of(root, "APPTEMPLATE64"),
            market_id=int_of(root, "MARKETPLACE_ID", -1),
            market_name=text_of(root, "MARKETPLACE"),
            state=int_of(root, "STATE", -1),
            type=int_of(root, "TYPE", -1),
            lock=Lock.from_xml(root),
            template=template_of(root),
        )

    def copy(self) -> MarketPlaceApp:
        return _copy.deepcopy(self)

    # -- behaviour -------------------------------------------------------------------

    def parse_template(self, now: int) -> str | None:
        """``MarketPlaceApp::parse_template``: None, or the error text."""
        tmpl = self.template
        for name in ("NAME", "ZONE_ID", "SOURCE", "SIZE", "MD5", "FORMAT", "REGTIME"):
            tmpl.erase(name)
        self.regtime = now
        kind = tmpl.get("TYPE") or ""
        self.type = str_to_type(kind) if kind else IMAGE
        origin = _int(tmpl.get("ORIGIN_ID") or "", None)
        if origin is None:
            return "Missing ORIGIN_ID for the MARKETPLACEAPP"
        self.origin_id = origin
        tmpl.erase("ORIGIN_ID")
        self.description = tmpl.get("DESCRIPTION") or ""
        self.apptemplate64 = tmpl.get("APPTEMPLATE64") or ""
        self.version = tmpl.get("VERSION") or "0.0"
        self.state = READY if self.type in (VMTEMPLATE, SERVICE_TEMPLATE) else LOCKED
        return None

    def post_update(self) -> None:
        """``MarketPlaceApp::post_update_template``."""
        tmpl = self.template
        self.description = tmpl.get("DESCRIPTION") or self.description
        self.apptemplate64 = tmpl.get("APPTEMPLATE64") or self.apptemplate64
        self.version = tmpl.get("VERSION") or self.version
        for name in ("SOURCE", "SIZE", "MD5", "FORMAT", "REGTIME", "ORIGIN_ID"):
            tmpl.erase(name)

    def enable(self, flag: bool) -> None:
        """``MarketPlaceApp::enable``: only READY and DISABLED apps change."""
        if self.state in (READY, DISABLED):
            self.state = READY if flag else DISABLED

    def from_template64(self, info64: str) -> None:
        """``MarketPlaceApp::from_template64``: an app a public market lists (raises
        ``TemplateSyntaxError`` or ``ValueError`` on a bad template)."""
        tmpl = parse_text(b64decode(info64))
        self.template = tmpl
        self.state = READY
        kind = tmpl.get("TYPE") or ""
        self.type = str_to_type(kind) if kind else IMAGE
        self.origin_id = -1
        tmpl.erase("TYPE")
        tmpl.erase("ORIGIN_ID")
        self.name = _take(tmpl, "NAME", self.name)
        self.source = _take(tmpl, "SOURCE", self.source)
        self.size = _int(_take(tmpl, "SIZE", str(self.size)), self.size)
        self.md5 = _take(tmpl, "MD5", self.md5)
        self.format = _take(tmpl, "FORMAT", self.format)
        self.regtime = _int(_take(tmpl, "REGTIME", str(self.regtime)), self.regtime)
        self.description = tmpl.get("DESCRIPTION") or self.description
        self.version = tmpl.get("VERSION") or self.version
        self.apptemplate64 = tmpl.get("APPTEMPLATE64") or self.apptemplate64

    def to_image_template(self, tmpl: Template) -> None:
        """``MarketPlaceApp::to_template``: what an image made from this app takes."""
        tmpl.set("FROM_APP_NAME", self.name)
        tmpl.set("PATH", self.source)
        tmpl.set("FORMAT", self.format)
        tmpl.set("FROM_APP_MD5", self.md5)


def _take(tmpl: Template, name: str, default: str) -> str:
    """``erase_template_attribute``: the value (or ``default``), removed."""
    value = tmpl.get(name)
    tmpl.erase(name)
    return default if value is None else value


__all__ = ["MarketPlaceApp", "TemplateSyntaxError"]


def complete_document(xml: str, root: str, required: tuple[str, ...]) -> bool:
    """Whether ``xml`` is a ``root`` document with every element ``from_xml`` needs."""
    try:
        doc = parse_xml(xml)
    except Exception:
        return False
    return doc.tag == root and all(doc.find(name) is not None for name in required)
