"""Who is asking: HTTP basic auth (REFSTREAM_DASHBOARD_USERS) or the report API's bearer
token (REFSTREAM_QUERY_API_TOKEN), decided by pure functions over the request's header and
peer address.

Rules:
- a write (program change, payout) always needs a login or the token; with neither
  configured writes are refused (403) and say which variable to set;
- a read needs them too as soon as either is configured, and always from beyond loopback;
- only a read from loopback on an unconfigured install is anonymous (like the report API).
The identity's name is what each change records ("alice", or "api-token").
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from refstream.settings import ENV_PREFIX, Secret, is_loopback

TOKEN_IDENTITY = "api-token"  # noqa: S105 - a name recorded with changes, not a secret
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    name: str
    method: str  # basic, bearer or loopback


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 (say who you are) or 403 (nobody may)
    message: str


@dataclass(frozen=True)
class AuthConfig:
    token: Secret | None = None
    users: tuple[tuple[str, Secret], ...] = ()

    @property
    def configured(self) -> bool:
        return self.token is not None or bool(self.users)


def _same(given: str, expected: str) -> bool:
    # Constant time over bytes: no timing oracle on the secret's content or length prefix.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def authenticate(authorization: str, config: AuthConfig) -> Identity | None:
    """The identity an Authorization header proves, or None."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and config.token is not None:
        return (
            Identity(TOKEN_IDENTITY, "bearer") if _same(credentials, config.token.value) else None
        )
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    if not sep:
        return None
    matched = None
    for user, secret in config.users:  # compare against every entry: no early exit
        if _same(name, user) & _same(password, secret.value):
            matched = user
    return Identity(matched, "basic") if matched is not None else None


def decide(authorization: str, remote: str | None, config: AuthConfig, *, write: bool
           ) -> Identity | Refusal:  # fmt: skip
    identity = authenticate(authorization, config) if authorization else None
    if identity is not None:
        return identity
    if write and not config.configured:
        return Refusal(
            403,
            f"changes need a login: set {ENV_PREFIX}DASHBOARD_USERS (name:password) or "
            f"{ENV_PREFIX}QUERY_API_TOKEN",
        )
    if write or config.configured or not is_loopback(remote or ""):
        return Refusal(401, "log in (basic auth) or send the bearer token")
    return Identity(ANONYMOUS, "loopback")
