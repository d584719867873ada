"""Encryption at rest for stored secrets (webhook and destination secrets), keyed by SECRET_KEY,
still reading what SECRET_KEY_PREVIOUS stored while a key rotation is under way."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretKeyMismatch(RuntimeError):
    """A stored secret does not decrypt: SECRET_KEY is not the one it was stored with."""


def _fernet(secret_key: str) -> Fernet:
    # HKDF turns an operator's passphrase of any length into exactly the 32 bytes Fernet needs.
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"loke-crm-sync",
        info=b"stored secrets v1",
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from any SECRET_KEY string.

    With a `previous` key it is a MultiFernet: it encrypts under `secret_key` only and decrypts
    under either, so that a rotated SECRET_KEY still reads what the old one stored until
    `loke-sync reencrypt` has rewritten it.
    """

    def __init__(self, secret_key: str, previous: str | None = None) -> None:
        self._current = _fernet(secret_key)
        older = [_fernet(previous)] if previous else []
        self._fernet = MultiFernet([self._current, *older])  # the first key encrypts
        self._rotating = bool(older)

    def encrypt(self, plaintext: str) -> str:
        """The text, encrypted for storage (under SECRET_KEY)."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """A stored secret, decrypted; raises SecretKeyMismatch under another SECRET_KEY."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyMismatch(self._mismatch("a stored secret cannot be decrypted")) from None

    def reencrypted(self, token: str) -> str | None:
        """None when `token` is already under SECRET_KEY, else the same secret encrypted under
        it (SecretKeyMismatch when neither key opens it)."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            pass
        else:
            return None
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyMismatch(self._mismatch("cannot be decrypted")) from None

    def _mismatch(self, what: str) -> str:
        if self._rotating:
            return f"{what}: it was stored under neither SECRET_KEY nor SECRET_KEY_PREVIOUS"
        return f"{what}: SECRET_KEY differs from the key it was stored with"
