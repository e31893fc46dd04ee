"""The master key that encrypts sensitive attributes (mirrors ``ONE_KEY`` handling).

At first start a random 64-hex key is written to ``var/.one/one_key`` (mode 0600).
Attributes listed in ``<OBJECT>_ENCRYPTED_ATTR`` are stored as base64 of AES-256-CBC
with the first 32 bytes of the key and a zero IV, as OpenNebula stores them.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from oned.template import Template

_IV = bytes(16)


class OneKey:
    """Encrypts and decrypts attribute values."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._cipher = Cipher(algorithms.AES(key.encode()[:32].ljust(32, b"\0")), modes.CBC(_IV))

    @classmethod
    def load_or_create(cls, path: Path) -> OneKey:
        if path.is_file():
            return cls(path.read_text(encoding="utf-8").strip())
        key = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return cls(key)

    def encrypt(self, text: str) -> str:
        padder = padding.PKCS7(128).padder()
        data = padder.update(text.encode()) + padder.finalize()
        enc = self._cipher.encryptor()
        return base64.b64encode(enc.update(data) + enc.finalize()).decode()

    def decrypt(self, text: str) -> str | None:
        """The clear value, or None when ``text`` is not a value this key encrypted."""
        try:
            raw = base64.b64decode(text, validate=True)
            if not raw or len(raw) % 16:
                return None
            dec = self._cipher.decryptor()
            padded = dec.update(raw) + dec.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            return (unpadder.update(padded) + unpadder.finalize()).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None

    def _apply(self, tmpl: Template, names: list[str], encrypt: bool) -> Template:
        out = tmpl.copy()
        singles = {n for n in names if "/" not in n}
        vectors = [tuple(n.split("/", 1)) for n in names if "/" in n]
        items = []
        for name, value in out.items:
            new = value
            if isinstance(value, str) and name in singles:
                new = self._convert(value, encrypt)
            elif isinstance(value, dict):
                for vec, key in vectors:
                    if vec == name and key in value:
                        value[key] = self._convert(value[key], encrypt)
            items.append((name, new))
        out.items = items
        return out

    def _convert(self, value: str, encrypt: bool) -> str:
        clear = self.decrypt(value)
        if encrypt:
            return value if clear is not None else self.encrypt(value)
        return value if clear is None else clear

    def encrypt_template(self, tmpl: Template, names: list[str]) -> Template:
        """A copy with the listed attributes encrypted (already encrypted ones kept)."""
        return self._apply(tmpl, names, True)

    def decrypt_template(self, tmpl: Template, names: list[str]) -> Template:
        return self._apply(tmpl, names, False)
