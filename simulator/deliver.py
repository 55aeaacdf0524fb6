"""Post deliveries to the ingress over HTTP, signed like Stripe, retried like Stripe.

    report = await deliver(plan, url=url, secret=Secret("whsec_..."), limits=DeliveryLimits())
    report.ok, report.acked, report.failed

Each attempt is signed afresh (`t=<now>,v1=HMAC-SHA256(secret, "t.body")`), as Stripe signs
every retry. 2xx is success. 503, other 5xx, 429, timeouts and refused connections are
retried with exponential backoff (a numeric Retry-After is honoured, up to the cap);
any other 4xx is a rejection and is not retried. Everything is bounded: attempts per
delivery, concurrent requests, the time of one request and of the whole run. Whatever is
left when the run's deadline passes is reported as unsent.

Only loopback targets are allowed unless the caller says otherwise (`check_target`): this
tool floods the URL it is given, and the machines it runs on may only talk to themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from refstream.settings import Secret
from simulator.stripe_factory import Json, event_bytes, signature_header

SIGNATURE_HEADER = "Stripe-Signature"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ERRORS_KEPT = 5


class UnsafeTargetError(ValueError):
    """A target URL the simulator refuses to post to."""


def check_target(url: str, *, allow_remote: bool = False) -> str:
    """`url` when it is an http(s) URL of this machine (or `allow_remote`); else raises."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTargetError(f"target must be an http(s) URL, got scheme {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise UnsafeTargetError("target URL has no host")
    if allow_remote or _is_loopback(host):
        return url
    raise UnsafeTargetError(
        f"refusing to post to {host!r}: only loopback targets (localhost, 127.0.0.0/8, ::1) "
        "are allowed unless --allow-remote is given"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: never resolved here, so never trusted
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True)
class DeliveryLimits:
    concurrency: int = 16  # requests in flight
    max_attempts: int = 8  # per delivery, the first included
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    request_timeout_s: float = 30.0
    deadline_s: float = 900.0  # the whole run; what is left then is unsent
    progress_interval_s: float = 1.0

    def validate(self) -> None:
        if not 1 <= self.concurrency <= 1024:
            raise ValueError(f"concurrency must be 1..1024, got {self.concurrency}")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError(f"max attempts must be 1..100, got {self.max_attempts}")
        for name in ("backoff_initial_s", "backoff_max_s", "request_timeout_s", "deadline_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.progress_interval_s <= 0:
            raise ValueError("progress_interval_s must be > 0")


@dataclass
class Progress:
    """Counters of a run in progress (also the final report's source)."""

    total: int
    started_at: float = field(default_factory=time.monotonic)
    sent: int = 0  # deliveries that made a first attempt
    acked: int = 0  # deliveries answered 2xx
    retried: int = 0  # attempts after the first
    rejected: int = 0  # deliveries refused with a 4xx (not retried)
    failed: int = 0  # deliveries that ran out of attempts or time
    statuses: Counter[str] = field(default_factory=Counter)  # per attempt: "200", "503", ...
    errors: list[str] = field(default_factory=list)  # the first few rejection reasons

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    def line(self) -> str:
        elapsed = max(self.elapsed_s, 1e-9)
        return (
            f"sent {self.sent}/{self.total} acked {self.acked} retried {self.retried} "
            f"rejected {self.rejected} failed {self.failed} | {self.acked / elapsed:.0f}/s "
            f"in {elapsed:.1f}s"
        )


@dataclass(frozen=True)
class DeliveryReport:
    total: int
    acked: int
    retried: int
    rejected: int
    failed: int
    unsent: int
    elapsed_s: float
    statuses: dict[str, int]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.acked == self.total

    def to_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "acked": self.acked,
            "retried": self.retried,
            "rejected": self.rejected,
            "failed": self.failed,
            "unsent": self.unsent,
            "elapsed_s": round(self.elapsed_s, 3),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": list(self.errors),
        }


async def deliver(
    deliveries: Sequence[Json],
    *,
    url: str,
    secret: Secret,
    limits: DeliveryLimits | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    allow_remote: bool = False,
    seed: int = 0,
) -> DeliveryReport:
    """POST every delivery (a Stripe event dict) to `url`, in order, `concurrency` at once."""
    limits = limits or DeliveryLimits()
    limits.validate()
    check_target(url, allow_remote=allow_remote)
    progress = Progress(total=len(deliveries))
    bodies: dict[str, bytes] = {}  # a duplicate is the same bytes, serialised once
    jitter = random.Random(seed)
    deadline = time.monotonic() + limits.deadline_s
    next_index = 0

    def body_of(event: Json) -> bytes:
        key = str(event.get("id"))
        if key not in bodies:
            bodies[key] = event_bytes(event)
        return bodies[key]

    async def post_one(session: aiohttp.ClientSession, body: bytes) -> None:
        delay = limits.backoff_initial_s
        for attempt in range(1, limits.max_attempts + 1):
            if attempt > 1:
                progress.retried += 1
            headers = {
                SIGNATURE_HEADER: signature_header(body, secret.value, int(time.time())),
                "Content-Type": "application/json; charset=utf-8",
            }
            retry_after: float | None = None
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    status = response.status
                    progress.statuses[str(status)] += 1
                    if 200 <= status < 300:
                        progress.acked += 1
                        return
                    if status not in RETRY_STATUSES:
                        progress.rejected += 1
                        if len(progress.errors) < MAX_ERRORS_KEPT:
                            text = (await response.text())[:300]
                            progress.errors.append(f"HTTP {status}: {text}")
                        return
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                progress.statuses[type(exc).__name__] += 1
            wait = min(limits.backoff_max_s, retry_after if retry_after is not None else delay)
            wait *= 0.5 + jitter.random() / 2  # jitter: retries of a burst do not align
            if attempt == limits.max_attempts or time.monotonic() + wait > deadline:
                break
            await asyncio.sleep(wait)
            delay = min(limits.backoff_max_s, delay * 2)
        progress.failed += 1

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < len(deliveries) and time.monotonic() < deadline:
            body = body_of(deliveries[next_index])
            next_index += 1
            progress.sent += 1
            await post_one(session, body)

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(limits.progress_interval_s)
            if on_progress is not None:
                on_progress(progress)

    timeout = aiohttp.ClientTimeout(total=limits.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=limits.concurrency)
    ticker = asyncio.create_task(report_progress())
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            workers = [worker(session) for _ in range(min(limits.concurrency, len(deliveries)))]
            await asyncio.gather(*workers)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    if on_progress is not None:
        on_progress(progress)
    return DeliveryReport(
        total=progress.total,
        acked=progress.acked,
        retried=progress.retried,
        rejected=progress.rejected,
        failed=progress.failed,
        unsent=progress.total - progress.sent,
        elapsed_s=progress.elapsed_s,
        statuses=dict(progress.statuses),
        errors=tuple(progress.errors),
    )


def _retry_after_s(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if seconds >= 0 else None
