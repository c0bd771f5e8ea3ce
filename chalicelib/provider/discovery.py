"""The provider's metadata (OpenID Connect Discovery 1.0 §3): where a relying party finds every
endpoint and what the provider supports. Entra ID reads it through the discovery URL an admin
gives its external authentication method, and caches it for a day.

Every URL is under the issuer, the API's public base URL: ``issuer`` + ``/.well-known/
openid-configuration`` is the document's own address (§4), and the issuer is the ``iss`` of every
token the provider signs.
"""

from __future__ import annotations

from typing import Any

from chalicelib.base.config import checked_issuer, settings

# Entra's external authentication method profile asks for these acr values; a security-key check
# is a possession factor, so it satisfies those that accept possession (see chalicelib/provider/tokens.py).
ACR_VALUES = ("possessionorinherence", "knowledgeorpossession", "knowledgeorpossessionorinherence", "possession")
CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "tid", "org", "sid")


def issuer() -> str:
    return checked_issuer(settings().provider_issuer)


def metadata() -> dict[str, Any]:
    """The discovery document (§3): what is required, and what a client needs to choose well."""
    base = issuer()
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oidc/authorize",
        "token_endpoint": f"{base}/oidc/token",
        "jwks_uri": f"{base}/oidc/jwks",
        "introspection_endpoint": f"{base}/oidc/introspect",
        "scopes_supported": ["openid"],
        "response_types_supported": ["code", "id_token"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "implicit"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        # RFC 7636: S256 only; "plain" would give an intercepted code's thief the verifier.
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        "acr_values_supported": list(ACR_VALUES),
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "prompt_values_supported": ["none", "login"],
        # RFC 9207: the authorization response names its issuer, against mix-up attacks.
        "authorization_response_iss_parameter_supported": True,
    }
