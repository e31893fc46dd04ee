"""Session authentication (mirrors ``UserPool::authenticate`` and ``AuthManager``).

A session is ``username:secret``. In order: unknown users go to the default external
driver; disabled users fail; ``server*`` drivers proxy for a target user; then a valid
login token, the cached session, the ``core`` password (SHA-256, SHA-1 upgraded), and
finally the external driver of the user's AUTH_DRIVER.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from oned.auth import server_cipher
from oned.auth.authorize import Caller
from oned.errors import AuthenticationError
from oned.log import logger
from oned.objects.user import CORE, PUBLIC, User, sha1_hex, sha256_hex


class ExternalAuth(Protocol):
    """The AUTH_MAD seam (``oned.managers.auth.AuthManager``): ``(ok, info)``."""

    def authenticate(
        self, uid: int, driver: str, username: str, password: str, secret: str
    ) -> Awaitable[tuple[bool, str]]: ...


class UserDirectory(Protocol):
    """What authentication needs from the user and group pools."""

    def user_by_name(self, name: str) -> User | None: ...

    def user(self, oid: int) -> User | None: ...

    def group_name(self, gid: int) -> str: ...

    def umask_of(self, user: User) -> int: ...

    async def upgrade_password(self, uid: int, hashed: str) -> None: ...

    async def create_external(self, name: str, driver: str, reply: str) -> User | None: ...

    async def sync_external_groups(self, uid: int, reply: str) -> None: ...


def _failed() -> AuthenticationError:
    return AuthenticationError("User couldn't be authenticated, aborting call.")


class Authenticator:
    """Turns a session string into the ``Caller`` the call runs as."""

    log = logger("AuM")

    def __init__(
        self,
        users: UserDirectory,
        clock: IReactorTime,
        session_expiration: int,
        default_auth: str = "default",
        external: ExternalAuth | None = None,
    ) -> None:
        self._users = users
        self._clock = clock
        self._expiration = session_expiration
        self._default_auth = default_auth
        self.external = external
        self._sessions: dict[int, tuple[str, float]] = {}
        self._on_login: list[Callable[[int], None]] = []

    def invalidate(self, uid: int) -> None:
        """Forget the cached session of ``uid`` (password, driver or state changed)."""
        self._sessions.pop(uid, None)

    def _cache(self, uid: int, secret: str) -> None:
        if self._expiration > 0:
            self._sessions[uid] = (secret, self._clock.seconds() + self._expiration)

    def _cached(self, uid: int, secret: str) -> bool:
        entry = self._sessions.get(uid)
        if entry is None:
            return False
        if entry[1] <= self._clock.seconds():
            del self._sessions[uid]
            return False
        return hmac.compare_digest(entry[0], secret)

    def caller_for(self, user: User, egid: int = -1) -> Caller:
        if egid >= 0:
            return Caller(
                user.oid,
                egid,
                user.name,
                self._users.group_name(egid),
                frozenset([egid]),
                self._users.umask_of(user),
            )
        return Caller(
            user.oid,
            user.gid,
            user.name,
            user.gname,
            frozenset(user.groups),
            self._users.umask_of(user),
        )

    async def authenticate(self, session: object) -> Caller:
        if not isinstance(session, str) or ":" not in session:
            raise _failed()
        username, secret = session.split(":", 1)
        if not username:
            raise _failed()
        user = self._users.user_by_name(username)
        if user is None:
            return await self._unknown_user(username, secret)
        if not user.enabled:
            raise _failed()
        if user.auth_driver.startswith("server"):
            return self._server_session(user, secret)
        now = self._clock.seconds()
        for token in user.tokens:
            if not token.expired(now) and hmac.compare_digest(token.token, secret):
                return self.caller_for(user, token.egid)
        if self._cached(user.oid, secret):
            return self.caller_for(user)
        if user.auth_driver == CORE:
            if hmac.compare_digest(sha256_hex(secret), user.password):
                self._cache(user.oid, secret)
                return self.caller_for(user)
            if hmac.compare_digest(sha1_hex(secret), user.password):
                await self._users.upgrade_password(user.oid, sha256_hex(secret))
                self._cache(user.oid, secret)
                return self.caller_for(user)
            raise _failed()
        if user.auth_driver == PUBLIC or self.external is None:
            raise _failed()
        ok, info = await self.external.authenticate(
            user.oid, user.auth_driver, user.name, user.password or "-", secret
        )
        if not ok:
            self.log.error("Auth Error: {info}", info=info)
            raise _failed()
        await self._users.sync_external_groups(user.oid, info)
        self._cache(user.oid, secret)
        refreshed = self._users.user(user.oid) or user
        return self.caller_for(refreshed)

    def _server_session(self, server: User, secret: str) -> Caller:
        """``serveradmin:target[:egid]:token``: run as ``target`` once the token checks."""
        parts = secret.split(":")
        if len(parts) < 2:
            raise _failed()
        target_name, token = parts[0], parts[-1]
        egid = -1
        if len(parts) == 3:
            try:
                egid = int(parts[1])
            except ValueError as exc:
                raise _failed() from exc
        if server.auth_driver == server_cipher.DRIVER:
            problem = server_cipher.verify(
                server.name, server.password, token, self._clock.seconds()
            )
        else:
            problem = f"Unsupported server driver {server.auth_driver}"
        if problem is not None:
            self.log.error("Auth Error: {problem}", problem=problem)
            raise _failed()
        target = self._users.user_by_name(target_name)
        if target is None or not target.enabled:
            raise _failed()
        if egid >= 0 and egid not in target.groups:
            raise _failed()
        return self.caller_for(target, egid)

    async def _unknown_user(self, username: str, secret: str) -> Caller:
        if self.external is None:
            raise _failed()
        ok, info = await self.external.authenticate(-1, self._default_auth, username, "-", secret)
        if not ok:
            self.log.error("Auth Error: {info}", info=info)
            raise _failed()
        user = await self._users.create_external(username, self._default_auth, info)
        if user is None:
            raise _failed()
        self._cache(user.oid, secret)
        return self.caller_for(user)
