"""Encryption at rest for stored secrets (webhook and destination secrets), keyed by SECRET_KEY."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretKeyMismatch(RuntimeError):
    """A stored secret does not decrypt: SECRET_KEY is not the one it was stored with."""


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from any SECRET_KEY string."""

    def __init__(self, secret_key: str) -> None:
        # HKDF turns an operator's passphrase of any length into exactly the 32 bytes Fernet needs.
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"loke-crm-sync",
            info=b"stored secrets v1",
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        """The text, encrypted for storage."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """A stored secret, decrypted; raises SecretKeyMismatch under another SECRET_KEY."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyMismatch(
                "a stored secret cannot be decrypted: SECRET_KEY differs from the key it was "
                "stored with"
            ) from None
