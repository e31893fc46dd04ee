"""External authentication and authorization via AUTH_MAD (mirrors ``src/authm``)."""

from oned.managers.auth.manager import AuthManager, AuthnResult, parse_authn_result

__all__ = ["AuthManager", "AuthnResult", "parse_authn_result"]
