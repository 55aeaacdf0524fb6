"""Sign webhook bodies exactly as Stripe does (with stripe-python's own signer) and post them.

header = sign(body, "whsec_test")                    # Stripe-Signature, timestamp now
result = await post_signed(session, url, body, "whsec_test")
result.status, result.json                           # e.g. 200, {"received": True, ...}
post_signed_sync(url, body, "whsec_test")            # the same without an event loop
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
import stripe

SIGNATURE_HEADER = "Stripe-Signature"


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `body`, from stripe-python's signer. That signer takes
    text, so a body that is not UTF-8 (only tests send one) is signed the same way by hand."""
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        timestamp = int(time.time()) if timestamp is None else timestamp
        digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256)
        return f"t={timestamp},v1={digest.hexdigest()}"
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def headers_for(header: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if header is not None:
        headers[SIGNATURE_HEADER] = header
    return headers


@dataclass(frozen=True)
class PostResult:
    status: int
    json: Any  # the decoded JSON answer, or None when the answer was not JSON


async def post_signed(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    secret: str,
    *,
    timestamp: int | None = None,
) -> PostResult:
    """POST `body` signed with `secret` (signature timestamp: now unless given)."""
    return await post_raw(session, url, body, sign(body, secret, timestamp))


async def post_raw(
    session: aiohttp.ClientSession, url: str, body: bytes, header: str | None
) -> PostResult:
    """POST `body` with exactly this Stripe-Signature header (None: no header)."""
    async with session.post(url, data=body, headers=headers_for(header)) as response:
        text = await response.read()
        return PostResult(response.status, _json_or_none(text))


def post_signed_sync(
    url: str, body: bytes, secret: str, *, timestamp: int | None = None, timeout_s: float = 30
) -> PostResult:
    headers = headers_for(sign(body, secret, timestamp))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return PostResult(response.status, _json_or_none(response.read()))
    except urllib.error.HTTPError as exc:
        return PostResult(exc.code, _json_or_none(exc.read()))


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
