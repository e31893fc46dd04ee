"""``server_cipher`` proxy tokens (mirrors ``server_cipher_auth.rb``).

A server user (``serveradmin``) signs ``<server>:<target>:<expire>`` with AES-256-CBC,
key = the first 32 characters of the SHA-256 hex of its password, IV = the first 16,
and sends ``<server>:<target>:<base64 token>`` as its session. The core holds the
SHA-256 hex as the stored password, so it can check the token itself.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DRIVER = "server_cipher"


def _cipher(stored_password: str) -> Cipher[modes.CBC]:
    key = stored_password[:32].encode()
    iv = stored_password[:16].encode()
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def sign(server: str, target: str, expire: int, stored_password: str) -> str:
    """The session secret a server user sends (``target:token``), for tests and tools."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(f"{server}:{target}:{expire}".encode()) + padder.finalize()
    enc = _cipher(stored_password).encryptor()
    token = base64.b64encode(enc.update(data) + enc.finalize()).decode()
    return f"{target}:{token}"


def verify(server: str, stored_password: str, token: str, now: float) -> str | None:
    """None if ``token`` is valid for ``server``, else the reason it is not."""
    if len(stored_password) < 32:
        return "Server password is not usable as a key"
    try:
        raw = base64.b64decode(token, validate=False)
        dec = _cipher(stored_password).decryptor()
        padded = dec.update(raw) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        text = (unpadder.update(padded) + unpadder.finalize()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return "bad decrypt"
    parts = text.split(":")
    if parts[0] != server:
        return "User name missmatch"
    try:
        expires = int(parts[-1])
    except ValueError:
        return "bad token"
    if now >= expires:
        return "login token expired"
    return None
