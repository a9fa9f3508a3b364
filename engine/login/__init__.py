"""Sign-in through the organisation's OpenID provider: sessions, the login user verifier, /connections."""
