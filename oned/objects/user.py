"""The USER object (mirrors ``User.h``/``User.cc``).

The stored body is the short form (up to ``TEMPLATE``), as in oned's ``user_pool``;
``one.user.info`` appends the quotas and the default quotas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import esc, ids_of, int_of, parse_xml, template_of, text_of
from oned.template import Template, cdata

CORE = "core"
PUBLIC = "public"
SERVER_CIPHER = "server_cipher"

ONEADMIN_ID = 0
SERVERADMIN_ID = 1
SERVERADMIN_NAME = "serveradmin"

INVALID_NAME_CHARS = " :\t\n\v\f\r"
INVALID_PASS_CHARS = " \t\n\v\f\r"  # noqa: S105


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def sha1_hex(secret: str) -> str:
    return hashlib.sha1(secret.encode()).hexdigest()  # noqa: S324 - legacy hash upgrade


@dataclass
class LoginToken:
    token: str
    expiration: int
    egid: int

    def expired(self, now: float) -> bool:
        return self.expiration != -1 and now >= self.expiration


@dataclass
class User:
    """An OpenNebula user."""

    oid: int
    name: str
    gid: int
    gname: str
    groups: list[int]
    password: str
    auth_driver: str = CORE
    enabled: bool = True
    tokens: list[LoginToken] = field(default_factory=list)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "user_pool"
    ROOT: ClassVar[str] = "USER"

    def in_group(self, gid: int) -> bool:
        return gid in self.groups

    def is_admin(self) -> bool:
        """uid 0 or a member of the oneadmin group."""
        return self.oid == ONEADMIN_ID or ONEADMIN_ID in self.groups

    def tokens_xml(self) -> str:
        return "".join(
            f"<LOGIN_TOKEN><TOKEN>{esc(t.token)}</TOKEN>"
            f"<EXPIRATION_TIME>{t.expiration}</EXPIRATION_TIME><EGID>{t.egid}</EGID>"
            "</LOGIN_TOKEN>"
            for t in self.tokens
        )

    def to_xml(self, template_xml: str | None = None) -> str:
        groups = "".join(f"<ID>{g}</ID>" for g in sorted(self.groups))
        return (
            f"<USER><ID>{self.oid}</ID><GID>{self.gid}</GID><GROUPS>{groups}</GROUPS>"
            f"<GNAME>{esc(self.gname)}</GNAME><NAME>{esc(self.name)}</NAME>"
            f"<PASSWORD>{cdata(self.password)}</PASSWORD>"
            f"<AUTH_DRIVER>{cdata(self.auth_driver)}</AUTH_DRIVER>"
            f"<ENABLED>{1 if self.enabled else 0}</ENABLED>{self.tokens_xml()}"
            f"{template_xml if template_xml is not None else self.template.to_xml()}"
            "</USER>"
        )

    def columns(self) -> dict[str, Any]:
        return {
            "uid": self.oid,
            "gid": self.gid,
            "owner_u": 1,
            "group_u": 0,
            "other_u": 0,
        }

    @classmethod
    def from_xml(cls, body: str) -> User:
        root = parse_xml(body)
        tokens = [
            LoginToken(text_of(t, "TOKEN"), int_of(t, "EXPIRATION_TIME"), int_of(t, "EGID", -1))
            for t in root.findall("LOGIN_TOKEN")
        ]
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            gid=int_of(root, "GID"),
            gname=text_of(root, "GNAME"),
            groups=ids_of(root, "GROUPS"),
            password=text_of(root, "PASSWORD"),
            auth_driver=text_of(root, "AUTH_DRIVER", CORE),
            enabled=int_of(root, "ENABLED", 1) == 1,
            tokens=tokens,
            template=template_of(root),
        )

    def copy(self) -> User:
        return User(
            self.oid,
            self.name,
            self.gid,
            self.gname,
            list(self.groups),
            self.password,
            self.auth_driver,
            self.enabled,
            [LoginToken(t.token, t.expiration, t.egid) for t in self.tokens],
            self.template.copy(),
        )
