"""The WebAuthn ceremonies and what they need: challenges, a member's credentials, the FIDO
metadata of authenticator models, and the authenticator policy that judges a key."""
