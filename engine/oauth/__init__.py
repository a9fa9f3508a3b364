"""OAuth 2.0 / OpenID Connect client pieces: token answers, id_tokens, the provider client."""
