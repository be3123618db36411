"""Build secrets at rest: each value is encrypted with the farm's key (BUILDFARM_SECRETS_KEY, a
Fernet key: AES-128-CBC with an HMAC-SHA256, so a token altered in Redis is refused, not
decrypted into garbage). The API encrypts what a user sets; the worker decrypts for a build."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from common.config import Config, ConfigError

KEY_SETTING = "BUILDFARM_SECRETS_KEY"


class SecretsNotConfigured(ConfigError):
    """Raised when a secret must be encrypted or decrypted on a farm that has no secrets key."""


class SecretCipher:
    """Encrypts and decrypts secret values with one key, checked once when made."""

    def __init__(self, key: str) -> None:
        if not key:
            raise SecretsNotConfigured(f"{KEY_SETTING} is not set: this farm cannot keep build secrets")
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{KEY_SETTING} is not a Fernet key (32 random bytes, url-safe base64: 44 characters); "
                "make one with: head -c 32 /dev/urandom | base64 | tr '+/' '-_'"
            ) from None

    @classmethod
    def from_config(cls, config: Config) -> SecretCipher | None:
        """The farm's cipher, or None when it has no key (a malformed key raises ConfigError)."""
        return cls(config.secrets_key) if config.secrets_key else None

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise ConfigError(
                f"a build secret cannot be decrypted with {KEY_SETTING}: was the key changed since?"
            ) from None
