"""The generic webhook's settings: one URL and the secret that signs every request."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from alerts.receivers.base import HttpUrl, ReceiverConfig


class WebhookConfig(ReceiverConfig):
    """Every notification POSTed as signed JSON to one URL (target ``default``)."""

    enabled_by: ClassVar[tuple[str, ...]] = ("url",)

    # repr=False: the path or query of a webhook URL is often a credential in itself
    url: HttpUrl | None = Field(default=None, repr=False,
                                description="Generic webhook receiver URL: every notification as signed JSON.")
    # validate_default: a URL without a secret must stop start-up, and that check lives here.
    secret: SecretStr | None = Field(default=None, validate_default=True,
                                     description="Shared secret that signs webhook requests (HMAC-SHA256).")

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Unsigned requests would teach receivers to accept anything: no secret, no webhook.
        if v is None and info.data.get("url") is not None:
            raise ValueError("must be set when TOKENPULSE_WEBHOOK_URL is set (it signs every request)")
        return v

    def secrets(self) -> list[str]:
        return [*super().secrets(), *([self.url] if self.url else [])]
