"""Delivery over real HTTP to a local server: Stripe signatures, retries, bounds, the URL
guard, and the `refstream simulate` command itself."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestServer

from refstream.cli import main as refstream_main
from refstream.settings import Secret
from simulator.deliver import (
    DeliveryLimits,
    UnsafeTargetError,
    check_target,
    deliver,
)
from simulator.plan import DeliveryOptions, delivery_plan
from simulator.scenario import ScenarioConfig, generate

SECRET = "whsec_simulator_unit"
EVENTS = list(generate(ScenarioConfig(customers=12, months=3, seed=2)).events)
FAST = DeliveryLimits(concurrency=8, max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.02)

Answer = Callable[[str, int], int]  # (event id, attempt number) -> HTTP status


class Receiver:
    """A webhook endpoint that verifies like Stripe's libraries and answers as told."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        try:
            stripe.WebhookSignature.verify_header(
                body, request.headers.get("Stripe-Signature", ""), SECRET, tolerance=300
            )
        except stripe.SignatureVerificationError:
            self.bad_signatures += 1
            return web.json_response({"error": "bad_signature"}, status=400)
        event_id = json.loads(body)["id"]
        self.attempts[event_id] += 1
        status = self.answer(event_id, self.attempts[event_id])
        if status == 200:
            self.accepted[event_id] += 1
        return web.json_response({"status": status}, status=status)


Serve = Callable[[Answer], Awaitable[tuple["Receiver", str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def start(answer: Answer) -> tuple[Receiver, str]:
        receiver = Receiver(answer)
        app = web.Application()
        app.router.add_post("/webhooks/stripe", receiver.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return receiver, str(server.make_url("/webhooks/stripe"))

    yield start
    for server in servers:
        await server.close()


async def test_every_delivery_arrives_signed_like_stripe(serve: Serve) -> None:
    receiver, url = await serve(lambda _id, _n: 200)
    plan = delivery_plan(EVENTS, DeliveryOptions(seed=1, duplicates=0.5, shuffle_window=20))
    report = await deliver(plan, url=url, secret=Secret(SECRET), limits=FAST)
    assert report.ok and report.acked == len(plan) and report.retried == 0
    assert receiver.bad_signatures == 0
    assert receiver.accepted == Counter(e["id"] for e in plan)


async def test_503_is_retried_until_accepted(serve: Serve) -> None:
    # Every third event is refused twice with 503 before it is accepted.
    flaky = {e["id"] for e in EVENTS[::3]}
    receiver, url = await serve(lambda i, n: 503 if i in flaky and n <= 2 else 200)
    report = await deliver(EVENTS, url=url, secret=Secret(SECRET), limits=FAST)
    assert report.ok
    assert report.retried == 2 * len(flaky)
    assert report.statuses == {"200": len(EVENTS), "503": 2 * len(flaky)}
    assert receiver.accepted == Counter(e["id"] for e in EVENTS)


async def test_a_delivery_stops_after_max_attempts(serve: Serve) -> None:
    receiver, url = await serve(lambda _id, _n: 503)
    events = EVENTS[:5]
    report = await deliver(events, url=url, secret=Secret(SECRET), limits=FAST)
    assert not report.ok
    assert (report.acked, report.failed) == (0, 5)
    assert receiver.attempts == Counter({e["id"]: FAST.max_attempts for e in events})


async def test_4xx_is_a_rejection_and_is_not_retried(serve: Serve) -> None:
    receiver, url = await serve(lambda _id, _n: 200)
    report = await deliver(EVENTS[:3], url=url, secret=Secret("whsec_wrong"), limits=FAST)
    assert (report.acked, report.rejected, report.retried) == (0, 3, 0)
    assert receiver.bad_signatures == 3
    assert "bad_signature" in report.errors[0]
    assert "whsec_wrong" not in json.dumps(report.to_json())


async def test_the_run_ends_at_its_deadline(serve: Serve) -> None:
    _, url = await serve(lambda _id, _n: 503)
    limits = DeliveryLimits(
        concurrency=1, max_attempts=100, backoff_initial_s=0.05, backoff_max_s=0.05, deadline_s=0.3
    )
    report = await deliver(EVENTS, url=url, secret=Secret(SECRET), limits=limits)
    assert report.acked == 0
    assert report.failed >= 1 and report.unsent >= 1
    assert report.failed + report.unsent == len(EVENTS)


async def test_connection_refused_is_retried_then_failed() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/webhooks/stripe"
    report = await deliver(EVENTS[:2], url=url, secret=Secret(SECRET), limits=FAST)
    assert (report.acked, report.failed, report.retried) == (0, 2, 2 * (FAST.max_attempts - 1))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/webhooks/stripe",
        "http://127.9.9.9/x",
        "http://localhost:8080/",
        "https://LOCALHOST/x",
        "http://[::1]:8080/x",
        "http://[::ffff:127.0.0.1]/x",
    ],
)
def test_loopback_targets_are_allowed(url: str) -> None:
    assert check_target(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080/webhooks/stripe",
        "https://example.com/webhooks/stripe",
        "http://0.0.0.0:8080/",
        "http://127.0.0.1.nip.io/",
        "http://[::ffff:8.8.8.8]/",
        "ftp://127.0.0.1/",
        "127.0.0.1:8080",
        "http:///nohost",
    ],
)
def test_other_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UnsafeTargetError):
        check_target(url)
    if url.startswith("http") and "nohost" not in url:
        assert check_target(url, allow_remote=True) == url


async def test_deliver_itself_refuses_a_remote_target() -> None:
    with pytest.raises(UnsafeTargetError):
        await deliver(EVENTS[:1], url="http://192.0.2.1/", secret=Secret(SECRET))


# --- the command ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        stripe.WebhookSignature.verify_header(
            body, self.headers["Stripe-Signature"], SECRET, tolerance=300
        )
        self.received.append(json.loads(body)["id"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_simulate_command_posts_the_plan_and_writes_its_expectations(
    http_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIM_SECRET", SECRET)
    monkeypatch.delenv("REFSTREAM_WEBHOOK_SECRETS", raising=False)
    args = ["simulate", "--customers", "10", "--months", "2", "--seed", "4"]
    args += ["--duplicates", "1", "--url", http_server, "--secret-from-env", "SIM_SECRET"]
    args += ["--expect-file", str(tmp_path / "expected.json")]
    args += ["--program-file", str(tmp_path / "program.toml")]
    assert refstream_main(args) == 0
    scenario = generate(ScenarioConfig(customers=10, months=2, seed=4))
    assert Counter(_Handler.received) == Counter({e["id"]: 2 for e in scenario.events})
    written = json.loads((tmp_path / "expected.json").read_text())
    assert written == json.loads(json.dumps(scenario.expected_document()))
    assert (tmp_path / "program.toml").read_text() == scenario.program.toml()
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["acked"] == 2 * len(scenario.events)
    assert "sent" in err and "acked" in err  # the progress line
    assert SECRET not in out + err


@pytest.mark.parametrize(
    ("extra", "env", "reason"),
    [
        (["--url", "http://192.0.2.7/webhooks/stripe"], {}, "refusing to post"),
        ([], {"REFSTREAM_WEBHOOK_SECRETS": ""}, "no signing secret"),
        (["--secret-from-env", "SIM_BAD"], {"SIM_BAD": "sk_live_oops"}, "does not hold"),
        (["--customers", "0"], {}, "customers must be"),
        (["--duplicates", "-1"], {}, "duplicates must be"),
        (["--concurrency", "0"], {}, "concurrency must be"),
    ],
)
def test_simulate_command_refuses_bad_options(
    extra: list[str],
    env: dict[str, str],
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REFSTREAM_WEBHOOK_SECRETS", SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert refstream_main(["simulate", "--customers", "3", *extra]) == 2
    err = capsys.readouterr().err
    assert reason in err
    assert "sk_live_oops" not in err and SECRET not in err
