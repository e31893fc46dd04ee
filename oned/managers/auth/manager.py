"""AUTHENTICATE/AUTHORIZE requests to the auth driver (mirrors ``AuthManager.cc``).

The core sends, with a fresh request id from the AUTH family's counter::

    AUTHENTICATE  <id> <uid> <driver> <username> <password or -> <b64 secret> \\n
    AUTHORIZE  <id> <uid> <request> ... <self authorization 1|0>\\n

(each followed by an empty line, as the C++ payload ends with ``endl``) and waits for
``AUTHENTICATE SUCCESS|FAILURE <id> <info>`` at most 90 s. On success the INFO of
AUTHENTICATE is ``<driver> <username> <secret> [gid|*gid ...]``, parsed by
:func:`parse_authn_result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.logger import Logger

from oned.drivers.families import SYNC_TIMEOUT, Family
from oned.drivers.message import b64encode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from oned.drivers.manager import DriverManager

__all__ = ["AuthManager", "AuthnResult", "parse_authn_result"]

_NO_DRIVER = "Could not find Authorization driver"


@dataclass(frozen=True)
class AuthnResult:
    """What a successful AUTHENTICATE reply says about the user.

    Attributes:
        driver: Auth driver that accepted the user.
        username: User name as the driver reports it.
        secret: Value to store as the user's password.
        group_ids: Groups the driver puts the user in (first = primary), used
            with DRIVER_MANAGED_GROUPS.
        admin_group_ids: The subset marked ``*`` (group admin).
    """

    driver: str
    username: str
    secret: str
    group_ids: list[int] = field(default_factory=list)
    admin_group_ids: list[int] = field(default_factory=list)

    @property
    def primary_gid(self) -> int:
        """First group id, or -1 when the driver gave none."""
        return self.group_ids[0] if self.group_ids else -1


def parse_authn_result(info: str) -> AuthnResult:
    """Parse ``<driver> <username> <secret> [gid|*gid ...]`` as ``UserPool`` does.

    Like the core's stream parsing, any whitespace after the last token makes the
    group list malformed.

    Raises:
        ValueError: ``One or more group IDs are malformed``.
    """
    tokens = info.split()
    driver, username, secret = ([*tokens, "", "", ""])[:3]
    groups: list[int] = []
    admins: list[int] = []
    tail = tokens[3:]
    if len(tokens) >= 3 and info != info.rstrip():
        tail = [*tail, ""]
    for token in tail:
        admin = token.startswith("*")
        raw = token[1:] if admin else token
        try:
            gid = int(raw)
        except ValueError:
            raise ValueError("One or more group IDs are malformed") from None
        if gid not in groups:
            groups.append(gid)
        if admin and gid not in admins:
            admins.append(gid)
    return AuthnResult(driver, username, secret, groups, admins)


class AuthManager:
    """Client of the AUTH_MAD driver for external authentication/authorization.

    Args:
        drivers: The daemon's driver manager (holds the ``auth_exe`` driver).
        timeout: Seconds to wait for a reply (oned: 90).
    """

    log = Logger(namespace="oned.AuM")

    def __init__(self, drivers: DriverManager, *, timeout: float = SYNC_TIMEOUT) -> None:
        self._drivers = drivers
        self.timeout = timeout

    @property
    def enabled(self) -> bool:
        """Whether an AUTH_MAD driver is configured."""
        return self._drivers.get(Family.AUTH) is not None

    @property
    def authz_enabled(self) -> bool:
        """Whether AUTH_MAD has an ``AUTHZ`` driver (else ACLs decide in-process)."""
        vectors = self._drivers.config.vectors("AUTH_MAD")
        return bool(vectors and vectors[0].get("AUTHZ"))

    async def authenticate(
        self, uid: int, driver: str, username: str, password: str, secret: str
    ) -> tuple[bool, str]:
        """Ask the auth driver to authenticate a login.

        Args:
            uid: The user's id, -1 for a user not in the DB yet.
            driver: Auth driver of the user (``ldap``, ``dummy`` ...).
            username: Login name.
            password: The stored password ("" when none).
            secret: The secret of the session string (sent base64-encoded).

        Returns:
            ``(ok, info)``: on success ``info`` is ``<driver> <user> <secret> [gids]``
            (see :func:`parse_authn_result`), else the error message.
        """
        if not self.enabled:
            return False, _NO_DRIVER
        fields = (driver, username, password)
        if not driver or not username or any(c.isspace() for f in fields for c in f):
            # The driver would silently drop a line with an extra token.
            return False, "Invalid characters in user name, driver or password"
        payload = f"{uid} {driver} {username} {password or '-'} {b64encode(secret)} \n"
        ok, info = await self._drivers.request(Family.AUTH, "AUTHENTICATE", payload, self.timeout)
        self.log.debug("_authenticate: {info}", info=info)
        return ok, info

    async def authorize(
        self, uid: int, requests: Sequence[str], self_authorize: bool
    ) -> tuple[bool, str]:
        """Ask the auth driver to authorize ``requests`` (``OBJ:id:OP:owner:acl``).

        Returns:
            ``(ok, info)`` from the driver.
        """
        if not self.enabled:
            return False, _NO_DRIVER
        if not requests:
            return False, "Empty authorization string"
        payload = f"{uid} {' '.join(requests)} {int(self_authorize)}\n"
        ok, info = await self._drivers.request(Family.AUTH, "AUTHORIZE", payload, self.timeout)
        self.log.debug("_authorize: {info}", info=info)
        return ok, info
