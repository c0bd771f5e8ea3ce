"""keyward as the second factor of other apps and IdPs: the OpenID provider (discovery, signing
keys, relying parties, authorization with code + PKCE and Entra's external authentication method
profile, tokens), token introspection and the API Gateway authorizer."""
