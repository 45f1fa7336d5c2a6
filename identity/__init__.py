"""Who is calling: passwords, API tokens, sessions, stream tokens, each request's principal."""
