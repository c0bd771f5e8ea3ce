"""Webhook signing secrets, sealed with KMS: the rule that the webhooks table holds no usable secret.

keyward must sign with the secret itself, so it cannot keep a hash of it as it does for backup
credentials. The secret is encrypted with the KMS key ``KEYWARD_WEBHOOK_SECRET_KEY`` under an
encryption context naming the organization and the endpoint, and only the ciphertext is stored:
whoever reads the table (a backup, an export, an operator) holds nothing that signs a delivery,
and a ciphertext copied onto another endpoint's item does not decrypt there. The API's role may
only encrypt with the key, the delivery function's role only decrypt, which it does at delivery
and nowhere else.

Endpoints created before secrets were sealed hold their secret in clear (``secret``): delivery
still reads it, changing such an endpoint seals it, and ``python -m keyward webhooks seal-secrets``
seals all the others.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from chalicelib.base import aws
from chalicelib.base.config import settings
from chalicelib.base.errors import WebhookSecretKeyUnavailable

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64 (Standard Webhooks)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def context(*, org_id: str, webhook_id: str) -> dict[str, str]:
    """The encryption context a secret is bound to: it decrypts only for the same endpoint."""
    return {"org_id": org_id, "webhook_id": webhook_id}


def seal(*, org_id: str, webhook_id: str, secret: str) -> bytes:
    """The secret encrypted with the webhook secret key, bound to its endpoint.

    Raises:
        WebhookSecretKeyUnavailable: KMS did not answer, or refused.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _kms().encrypt(
            KeyId=settings().webhook_secret_key,
            Plaintext=secret.encode(),
            EncryptionContext=context(org_id=org_id, webhook_id=webhook_id),
        )
    except (BotoCoreError, ClientError) as error:
        raise WebhookSecretKeyUnavailable(
            f"The webhook's signing secret could not be sealed ({type(error).__name__}); nothing was changed."
        ) from None
    return bytes(answer["CiphertextBlob"])


def unseal(*, org_id: str, webhook_id: str, sealed: bytes | None, legacy: str | None = None) -> str:
    """The secret to sign with: the sealed one decrypted (the delivery function's role only), else
    the clear secret of an endpoint from before secrets were sealed.

    Raises:
        botocore.exceptions.ClientError: KMS refused (a ciphertext of another endpoint, say) or failed.
    """
    if sealed is None:
        if legacy is None:
            raise ValueError(f"webhook {webhook_id} of {org_id} holds no secret")
        return legacy
    answer = _kms().decrypt(
        CiphertextBlob=sealed,
        KeyId=settings().webhook_secret_key,
        EncryptionContext=context(org_id=org_id, webhook_id=webhook_id),
    )
    return bytes(answer["Plaintext"]).decode()


def _kms() -> Any:
    return aws.client("kms")
