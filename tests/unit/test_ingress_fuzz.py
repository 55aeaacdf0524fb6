"""Fuzzing the ingress over raw HTTP: random body bytes, Stripe-Signature values,
Content-Type and Content-Encoding, sent over a real socket to a real listener (aiohttp's
own parser) with a fake publisher. Whatever arrives: never a 5xx, always a JSON answer,
never a 2xx (nor a publish) for a body that is not signed with our secret, and a signed
body is published exactly when it is answered 2xx."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingress.app import WEBHOOK_PATH, create_app
from ingress.server import Listening, start_listeners
from refstream.settings import IngressSettings, Secret
from tests.support.signing import sign
from tests.unit.test_ingress_app import FakePublisher

SECRET = "whsec_fuzz_tests"
NOW = 1_800_000_000
SETTINGS = IngressSettings(
    host="127.0.0.1",
    port=0,
    webhook_secrets=(Secret(SECRET),),
    max_body_bytes=16 * 1024,
    body_read_timeout_ms=2_000,
    max_header_bytes=2048,
)


@dataclass
class Served:
    port: int
    publisher: FakePublisher


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One listener for all examples, on a loop in its own thread (hypothesis tests are
    synchronous; a server per example would make the fuzzing slow)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> Listening:
        publisher = FakePublisher()
        listening = await start_listeners(
            create_app(SETTINGS, publisher, clock=lambda: NOW), SETTINGS
        )
        box["served"] = Served(listening.port, publisher)
        return listening

    def run() -> None:
        asyncio.set_event_loop(loop)
        box["listening"] = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield box["served"]
    asyncio.run_coroutine_threadsafe(box["listening"].close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(request)
        # No half-close: aiohttp takes a client's EOF as a hang-up and answers nothing.
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
)
SIGNATURE_VALUES = st.one_of(
    st.none(),
    HEADER_TEXT,
    st.builds(
        lambda t, sigs: ",".join([f"t={t}", *(f"{s}={v}" for s, v in sigs)]),
        st.one_of(st.integers(-5, 2 * NOW), HEADER_TEXT),
        st.lists(st.tuples(st.sampled_from(["v1", "v0", "v2", "t", ""]), HEADER_TEXT), max_size=4),
    ),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]),
    HEADER_TEXT,
)  # fmt: skip
ENCODINGS = st.one_of(
    st.none(),
    st.sampled_from(["gzip", "deflate", "br", "identity", "zstd", "gzip, br"]),
    HEADER_TEXT,
)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec=None), max_size=8),  # includes lone surrogates
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)


def event_like(extra: Any) -> bytes:
    event = {
        "id": "evt_fuzz",
        "object": "event",
        "created": NOW,
        "livemode": False,
        "type": "invoice.paid",
        "data": {"object": {"id": "in_1", "object": "invoice", "customer": "cus_A", "x": extra}},
    }
    return json.dumps(event).encode("utf-8", "surrogatepass")  # json.dumps emits NaN too


def request_bytes(
    body: bytes,
    signature: str | None,
    content_type: str | None,
    encoding: str | None,
    chunked: bool,
) -> bytes:
    lines = [f"POST {WEBHOOK_PATH} HTTP/1.1", "Host: fuzz", "Connection: close"]
    for name, value in (("Stripe-Signature", signature), ("Content-Type", content_type),
                        ("Content-Encoding", encoding)):  # fmt: skip
        if value is not None:
            lines.append(f"{name}: {value}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + payload


def check(served: Served, request: bytes, signed: bool) -> int:
    before = len(served.publisher.published)
    status, answer = exchange(served.port, request)
    assert status < 500, answer
    assert isinstance(json.loads(answer), dict), answer  # every answer is JSON
    published = len(served.publisher.published) - before
    if 200 <= status < 300:
        assert signed, "a body not signed with our secret was accepted"
        assert published == 1
    else:
        assert published == 0
    event(f"status {status}")  # shown by --hypothesis-show-statistics
    return status


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(
    body=st.binary(max_size=3000),
    signature=SIGNATURE_VALUES,
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    chunked=st.booleans(),
)
def test_unsigned_random_requests(
    served: Served,
    body: bytes,
    signature: str | None,
    content_type: str | None,
    encoding: str | None,
    chunked: bool,
) -> None:
    check(served, request_bytes(body, signature, content_type, encoding, chunked), signed=False)


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=3000), JSON_VALUES.map(event_like)),
    content_type=CONTENT_TYPES,
    encoding=st.one_of(st.none(), st.just("identity"), ENCODINGS),
    chunked=st.booleans(),
)
def test_signed_random_bodies(
    served: Served, body: bytes, content_type: str | None, encoding: str | None, chunked: bool
) -> None:
    """Signed with our secret: content decides; still never a 5xx, and 2xx == published."""
    signature = sign(body, SECRET, NOW)
    check(served, request_bytes(body, signature, content_type, encoding, chunked), signed=True)
