"""Authentication (sessions, tokens, server proxies) and authorization (ACLs)."""
