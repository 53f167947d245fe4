"""Personal data at rest: AES-256-GCM with key ids (rotation), HMAC blind indexes, masking.

Ciphertext layout: b'v1:' + key id + b':' + 12-byte nonce + ciphertext||tag. The associated
data binds a value to where it belongs (e.g. 'borrower_phone.e164'), so a ciphertext copied
into another column does not decrypt. The first key in the ring encrypts; every key decrypts;
`rotate` re-encrypts under the first key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class CryptoError(ValueError):
    pass


class KeyRing:
    def __init__(self, spec: str, index_key: str) -> None:
        """`spec` is 'kid:base64key,kid2:base64key'; each key is 32 bytes."""
        self._keys: dict[str, AESGCM] = {}
        self._order: list[str] = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            kid, _, b64 = part.partition(":")
            try:
                key = base64.b64decode(b64, validate=True)
            except ValueError as exc:
                raise CryptoError(f"encryption key {kid!r} is not base64") from exc
            if len(key) != 32 or not kid or ":" in kid:
                raise CryptoError(f"encryption key {kid!r} must be 32 bytes with a non-empty id")
            self._keys[kid] = AESGCM(key)
            self._order.append(kid)
        if not self._order:
            raise CryptoError("no encryption keys configured")
        self._index_key = index_key.encode()

    @property
    def current(self) -> str:
        return self._order[0]

    def encrypt(self, plaintext: str, aad: str) -> bytes:
        nonce = os.urandom(12)
        ct = self._keys[self.current].encrypt(nonce, plaintext.encode(), aad.encode())
        return b"v1:" + self.current.encode() + b":" + nonce + ct

    def decrypt(self, blob: bytes, aad: str) -> str:
        try:
            version, kid, rest = bytes(blob).split(b":", 2)
        except ValueError as exc:
            raise CryptoError("not a Parley ciphertext") from exc
        key = self._keys.get(kid.decode())
        if version != b"v1" or key is None:
            raise CryptoError(f"unknown key id {kid.decode()!r}")
        try:
            return key.decrypt(rest[:12], rest[12:], aad.encode()).decode()
        except InvalidTag as exc:
            raise CryptoError("ciphertext does not verify (wrong key, column or tampered)") from exc

    def key_id_of(self, blob: bytes) -> str:
        return bytes(blob).split(b":", 2)[1].decode()

    def rotate(self, blob: bytes, aad: str) -> bytes:
        """The same plaintext under the current key (no-op if already current)."""
        if self.key_id_of(blob) == self.current:
            return bytes(blob)
        return self.encrypt(self.decrypt(blob, aad), aad)

    def blind_index(self, value: str, purpose: str) -> str:
        """A keyed hash for equality lookups that reveals nothing without the index key."""
        return hmac.new(self._index_key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def mask_phone(e164: str) -> str:
    """'+8613800138000' → '+86138****8000': enough to recognise, not enough to dial."""
    if len(e164) <= 7:
        return e164[:2] + "*" * max(len(e164) - 2, 0)
    return e164[: len(e164) - 8] + "****" + e164[-4:]


def mask_id_number(value: str) -> str:
    return (
        value[:3] + "*" * max(len(value) - 7, 0) + value[-4:]
        if len(value) > 7
        else "*" * len(value)
    )
