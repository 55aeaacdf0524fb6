# ruff: noqa: E501 - the tables of raw requests below read best one request per line
"""Hostile requests against a real ingress listener (real sockets, aiohttp's own parser):
every refusal is a 4xx with a JSON reason, nothing is published, no answer carries a
Server banner, and content is judged only after the signature is verified."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from ingress.app import WEBHOOK_PATH, create_app
from ingress.server import Listening, start_listeners
from refstream.settings import IngressSettings, Secret
from tests.support.signing import sign
from tests.unit.test_ingress_app import FakePublisher

SECRET = "whsec_hostile_tests"
NOW = 1_800_000_000
SETTINGS = IngressSettings(
    host="127.0.0.1",
    port=0,
    webhook_secrets=(Secret(SECRET),),
    max_body_bytes=64 * 1024,
    body_read_timeout_ms=300,
    max_header_bytes=4096,
    max_json_depth=64,
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Ingress:
    listening: Listening
    publisher: FakePublisher

    async def raw(self, data: bytes, *, port: int | None = None, close: bool = True) -> Answer:
        """Send raw bytes, read the answer until the server closes (or the headers and
        Content-Length when it keeps the connection)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port or self.listening.port)
        try:
            writer.write(data)
            await writer.drain()
            async with asyncio.timeout(20):  # a safety net only, never asserted
                head = await reader.readuntil(b"\r\n\r\n")
                status_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length)
        finally:
            writer.close()
        return Answer(int(status_line.split()[1]), headers, body)

    async def post(
        self,
        body: bytes,
        signature: str | None,
        *,
        extra: str = "",
        path: str = WEBHOOK_PATH,
        port: int | None = None,
    ) -> Answer:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        )
        if signature is not None:
            head += f"Stripe-Signature: {signature}\r\n"
        return await self.raw((head + extra + "\r\n").encode("latin-1") + body, port=port)

    async def get(self, path: str, port: int | None = None) -> Answer:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        return await self.raw(request.encode(), port=port)


StartIngress = Callable[..., Awaitable[Ingress]]


@pytest.fixture
async def start() -> AsyncIterator[StartIngress]:
    started: list[Listening] = []

    async def make(settings: IngressSettings = SETTINGS) -> Ingress:
        publisher = FakePublisher()
        app = create_app(settings, publisher, clock=lambda: NOW)
        listening = await start_listeners(app, settings)
        started.append(listening)
        return Ingress(listening, publisher)

    yield make
    for listening in started:
        await listening.close()


def event(**data_object: Any) -> dict[str, Any]:
    return {
        "id": "evt_hostile",
        "object": "event",
        "created": NOW - 5,
        "livemode": False,
        "type": "invoice.paid",
        "data": {"object": {"id": "in_1", "object": "invoice", "customer": "cus_A", **data_object}},
    }


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int) -> bytes:
    """An event whose deepest container is at `depth` (the event itself is depth 1)."""
    inner = "[" * (depth - 3) + "]" * (depth - 3)  # event, data, object, then arrays
    return body_of(event(deep="X")).replace(b'"X"', inner.encode())


# (name, body, reason) of signed bodies that no downstream stage can carry.
HOSTILE_BODIES = [
    ("invalid utf-8 in a string", body_of(event(note="X")).replace(b"X", b"\xc3\x28"), "invalid_json"),
    ("lone surrogate, deep value", body_of(event(m={"a": [{"b": "\\udc00"}]})).replace(b"\\\\", b"\\"), "lone_surrogate"),
    ("lone surrogate in a key", body_of(event(m={"X": 1})).replace(b"X", b"k\\ud800"), "lone_surrogate"),
    ("lone high surrogate at the end", body_of(event(n="X")).replace(b"X", b"\\ud83d"), "lone_surrogate"),
    ("integer 10^20", body_of(event(amount=10**20)), "integer_out_of_range"),
    ("integer -10^20", body_of(event(amount=-(10**20))), "integer_out_of_range"),
    ("integer 2^63", body_of(event(amount=2**63)), "integer_out_of_range"),
    ("integer -2^63-1", body_of(event(amount=-(2**63) - 1)), "integer_out_of_range"),
    ("5000-digit integer", body_of(event(amount=0)).replace(b'"amount": 0', b'"amount": ' + b"9" * 5000), "integer_out_of_range"),
    ("NaN", body_of(event(x=0)).replace(b'"x": 0', b'"x": NaN'), "non_finite_number"),
    ("Infinity", body_of(event(x=0)).replace(b'"x": 0', b'"x": Infinity'), "non_finite_number"),
    ("-Infinity", body_of(event(x=0)).replace(b'"x": 0', b'"x": -Infinity'), "non_finite_number"),
    ("1e400 overflows", body_of(event(x=0)).replace(b'"x": 0', b'"x": 1e400'), "non_finite_number"),
    ("nesting 65 deep", nested(65), "nesting_too_deep"),
    ("nesting 100000 deep", nested(100_000)[:60_000], "invalid_json"),
]  # fmt: skip

FINE_BODIES = [
    ("surrogate pair", body_of(event(n="X")).replace(b"X", b"\\ud83d\\ude00")),
    ("integer 2^63-1", body_of(event(amount=2**63 - 1))),
    ("integer -2^63", body_of(event(amount=-(2**63)))),
    ("large finite float", body_of(event(x=1.5e308))),
    ("nesting 64 deep", nested(64)),
]


@pytest.mark.parametrize(
    ("name", "body", "reason"), HOSTILE_BODIES, ids=[h[0] for h in HOSTILE_BODIES]
)
async def test_signed_bodies_no_stage_can_carry_are_refused(
    start: StartIngress, name: str, body: bytes, reason: str
) -> None:
    ingress = await start()
    answer = await ingress.post(body, sign(body, SECRET, NOW))
    assert (answer.status, answer.json["error"]) == (400, reason), name
    assert "server" not in answer.headers
    assert ingress.publisher.published == []


@pytest.mark.parametrize(("name", "body"), FINE_BODIES, ids=[f[0] for f in FINE_BODIES])
async def test_the_edges_that_are_representable_are_accepted(
    start: StartIngress, name: str, body: bytes
) -> None:
    ingress = await start()
    answer = await ingress.post(body, sign(body, SECRET, NOW))
    assert answer.status == 200, (name, answer.body)
    assert [e.verified.body for e in ingress.publisher.published] == [body]


@pytest.mark.parametrize(("name", "body", "_"), HOSTILE_BODIES, ids=[h[0] for h in HOSTILE_BODIES])
async def test_unsigned_hostile_bodies_only_learn_about_the_signature(
    start: StartIngress, name: str, body: bytes, _: str
) -> None:
    ingress = await start()
    missing = await ingress.post(body, None)
    forged = await ingress.post(body, sign(body, "whsec_not_ours", NOW))
    assert (missing.status, missing.json["error"]) == (400, "missing_signature"), name
    assert (forged.status, forged.json["error"]) == (400, "signature_mismatch"), name
    assert ingress.publisher.published == []


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", True), ("gzip", False), ("deflate", False), ("br", False), ("x-junk", False)],
)
async def test_compressed_bodies_are_415_and_never_decoded(
    start: StartIngress, encoding: str, compress: bool
) -> None:
    ingress = await start()
    plain = body_of(event())
    body = gzip.compress(plain) if compress else b"\x1f\x8b not really " + plain
    signature = sign(plain if compress else body, SECRET, NOW)
    answer = await ingress.post(body, signature, extra=f"Content-Encoding: {encoding}\r\n")
    assert (answer.status, answer.json["error"]) == (415, "unsupported_content_encoding")
    assert ingress.publisher.published == []


async def test_identity_encoding_is_fine(start: StartIngress) -> None:
    ingress = await start()
    body = body_of(event())
    answer = await ingress.post(
        body, sign(body, SECRET, NOW), extra="Content-Encoding: identity\r\n"
    )
    assert answer.status == 200


async def test_a_body_that_does_not_arrive_in_time_is_408(start: StartIngress) -> None:
    ingress = await start()
    body = body_of(event())
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.listening.port)
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"Stripe-Signature: {sign(body, SECRET, NOW)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:10])  # and then nothing more
    async with asyncio.timeout(20):
        raw = await reader.read()  # the server answers and closes
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line.split()[1] == b"408"
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "body_read_timeout"
    assert ingress.publisher.published == []


@pytest.mark.parametrize(
    ("name", "request_bytes", "status", "reason"),
    [
        ("header value too long", f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 9000}\r\n\r\n".encode(), 431, "headers_too_large"),
        ("signature header too long", f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nStripe-Signature: t=1,{'v1=ab,' * 2000}\r\n\r\n{{}}".encode(), 431, "headers_too_large"),
        ("request line too long", f"GET /{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 431, "headers_too_large"),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03junk\r\n\r\n", 400, "bad_http_request"),
        ("bad header line", b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad_http_request"),
        ("bad content-length", f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".encode(), 400, "bad_http_request"),
        ("two content-lengths", f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}".encode(), 400, "bad_http_request"),
        ("bad chunk size", f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nStripe-Signature: t=1,v1=ab\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n".encode(), 400, None),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)  # fmt: skip
async def test_requests_the_http_parser_refuses_get_json_4xx(
    start: StartIngress, name: str, request_bytes: bytes, status: int, reason: str | None
) -> None:
    ingress = await start()
    answer = await ingress.raw(request_bytes)
    assert answer.status == status, (name, answer.body)
    assert answer.headers["content-type"].startswith("application/json"), name
    assert reason is None or answer.json["error"] == reason
    assert isinstance(answer.json["error"], str)
    assert "server" not in answer.headers, name
    assert ingress.publisher.published == []


async def test_no_server_banner_and_json_404_405(start: StartIngress) -> None:
    ingress = await start()
    body = body_of(event())
    accepted = await ingress.post(body, sign(body, SECRET, NOW))
    assert accepted.status == 200 and "server" not in accepted.headers
    for path in ("/", "/admin", "/webhooks/stripe/../x", "/%ff"):
        answer = await ingress.get(path)
        assert (answer.status, answer.json["error"]) == (404, "not_found"), path
        assert "server" not in answer.headers
    wrong_method = await ingress.get(WEBHOOK_PATH)
    assert (wrong_method.status, wrong_method.json["error"]) == (405, "method_not_allowed")
    assert (await ingress.get("/metrics")).status == 200  # no admin port: same listener


async def test_an_admin_port_takes_health_and_metrics_off_the_public_listener(
    start: StartIngress,
) -> None:
    ingress = await start(replace(SETTINGS, admin_port=0))
    admin = ingress.listening.admin_port
    assert admin is not None and admin != ingress.listening.port
    for path in ("/metrics", "/readyz", "/healthz"):
        public = await ingress.get(path)
        assert (public.status, public.json["error"]) == (404, "not_found"), path
        served = await ingress.get(path, port=admin)
        assert served.status == 200 and "server" not in served.headers, path
    body = body_of(event())
    assert (await ingress.post(body, sign(body, SECRET, NOW))).status == 200
    on_admin = await ingress.post(body, sign(body, SECRET, NOW), port=admin)
    assert on_admin.status == 404
    metrics = (await ingress.get("/metrics", port=admin)).body.decode()
    assert 'refstream_ingress_requests_total{outcome="accepted"} 1.0' in metrics
