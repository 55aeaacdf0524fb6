"""Stripe-Signature rules, one test per rule, signed with stripe-python's own signer; and a
property check that whatever stripe-python accepts within the tolerance, we accept too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import stripe
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import ingress.signature as signature_module
from ingress.rejection import Reason, Rejected
from ingress.signature import SignatureVerifier, VerifiedBody
from refstream.settings import Secret
from tests.support.signing import sign

SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ="
OLD_SECRET = "whsec_b2xkc2VjcmV0b2xkc2VjcmV0"
OTHER_SECRET = "whsec_b3RoZXJzZWNyZXRvdGhlcg=="
TOLERANCE_S = 300
NOW = 1_800_000_000
BODY = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid"}).encode()


def verifier(*secrets: str, tolerance_s: int = TOLERANCE_S) -> SignatureVerifier:
    return SignatureVerifier([Secret(s) for s in secrets or (SECRET,)], tolerance_s)


def hex_sig(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def reason_of(result: VerifiedBody | Rejected) -> Reason | None:
    return result.reason if isinstance(result, Rejected) else None


def test_a_stripe_signed_body_is_verified_as_is() -> None:
    result = verifier().verify(BODY, sign(BODY, SECRET, NOW), now=NOW)
    assert isinstance(result, VerifiedBody)
    assert result.body == BODY
    assert result.signed_at == NOW


@pytest.mark.parametrize("header", [None, ""])
def test_no_header_is_missing_signature(header: str | None) -> None:
    assert reason_of(verifier().verify(BODY, header, now=NOW)) is Reason.MISSING_SIGNATURE


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"v1={hex_sig(SECRET, NOW, BODY)}",  # no t
        f"t=,v1={hex_sig(SECRET, NOW, BODY)}",
        f"t=abc,v1={hex_sig(SECRET, NOW, BODY)}",
        f"t=-{NOW},v1={hex_sig(SECRET, NOW, BODY)}",
        f"t={'9' * 5000},v1={hex_sig(SECRET, NOW, BODY)}",
    ],
)
def test_a_header_without_a_unix_timestamp_is_malformed(header: str) -> None:
    result = verifier().verify(BODY, header, now=NOW)
    assert reason_of(result) is Reason.MALFORMED_SIGNATURE_HEADER


def test_v0_and_unknown_schemes_are_never_accepted_even_when_correct() -> None:
    good = hex_sig(SECRET, NOW, BODY)
    for header in (f"t={NOW},v0={good}", f"t={NOW},v2={good}", f"t={NOW},V1={good}"):
        assert reason_of(verifier().verify(BODY, header, now=NOW)) is Reason.NO_V1_SIGNATURE


def test_v0_beside_a_wrong_v1_does_not_rescue_it() -> None:
    header = f"t={NOW},v1={'0' * 64},v0={hex_sig(SECRET, NOW, BODY)}"
    assert reason_of(verifier().verify(BODY, header, now=NOW)) is Reason.SIGNATURE_MISMATCH


@pytest.mark.parametrize("position", [0, 1, 2])
def test_any_of_several_v1_entries_may_match(position: int) -> None:
    entries = [f"v1={'a' * 64}", f"v1={'b' * 64}"]
    entries.insert(position, f"v1={hex_sig(SECRET, NOW, BODY)}")
    header = ",".join([f"t={NOW}", *entries, f"v0={'c' * 64}"])
    assert isinstance(verifier().verify(BODY, header, now=NOW), VerifiedBody)


@pytest.mark.parametrize("signed_with", [SECRET, OLD_SECRET])
def test_any_configured_secret_may_match_while_rolling(signed_with: str) -> None:
    result = verifier(OLD_SECRET, SECRET).verify(BODY, sign(BODY, signed_with, NOW), now=NOW)
    assert isinstance(result, VerifiedBody)


def test_a_body_signed_with_another_secret_is_a_mismatch() -> None:
    result = verifier(OLD_SECRET, SECRET).verify(BODY, sign(BODY, OTHER_SECRET, NOW), now=NOW)
    assert reason_of(result) is Reason.SIGNATURE_MISMATCH


def test_the_key_is_the_whole_whsec_string_not_its_decoded_part() -> None:
    decoded_key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(decoded_key, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    result = verifier().verify(BODY, f"t={NOW},v1={digest}", now=NOW)
    assert reason_of(result) is Reason.SIGNATURE_MISMATCH


def test_the_raw_bytes_are_verified_so_any_change_is_a_mismatch() -> None:
    header = sign(BODY, SECRET, NOW)
    tampered = BODY.replace(b"invoice.paid", b"invoice.void")
    reserialised = json.dumps(json.loads(BODY), indent=2).encode()
    for body in (tampered, reserialised, BODY + b"\n"):
        assert reason_of(verifier().verify(body, header, now=NOW)) is Reason.SIGNATURE_MISMATCH


def test_the_signature_is_lowercase_hex() -> None:
    header = f"t={NOW},v1={hex_sig(SECRET, NOW, BODY).upper()}"
    assert reason_of(verifier().verify(BODY, header, now=NOW)) is Reason.SIGNATURE_MISMATCH


def test_a_non_ascii_signature_is_a_mismatch_not_a_crash() -> None:
    header = f"t={NOW},v1=caf\u00e9\udcff"
    assert reason_of(verifier().verify(BODY, header, now=NOW)) is Reason.SIGNATURE_MISMATCH


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signature_module.hmac, "compare_digest", spy)
    header = f"t={NOW},v1={'0' * 64},v1={hex_sig(SECRET, NOW, BODY)}"
    assert isinstance(verifier(OLD_SECRET, SECRET).verify(BODY, header, now=NOW), VerifiedBody)
    assert len(calls) == 4  # every entry against every secret: no early exit on a match


@pytest.mark.parametrize("age_s", [TOLERANCE_S + 1, 10 * TOLERANCE_S])
def test_a_stale_timestamp_is_outside_tolerance(age_s: int) -> None:
    result = verifier().verify(BODY, sign(BODY, SECRET, NOW - age_s), now=NOW)
    assert reason_of(result) is Reason.TIMESTAMP_OUTSIDE_TOLERANCE
    assert "in the past" in result.detail  # type: ignore[union-attr]


@pytest.mark.parametrize("ahead_s", [TOLERANCE_S + 1, 10 * TOLERANCE_S])
def test_a_future_timestamp_is_outside_tolerance(ahead_s: int) -> None:
    result = verifier().verify(BODY, sign(BODY, SECRET, NOW + ahead_s), now=NOW)
    assert reason_of(result) is Reason.TIMESTAMP_OUTSIDE_TOLERANCE
    assert "in the future" in result.detail  # type: ignore[union-attr]


@pytest.mark.parametrize("offset_s", [-TOLERANCE_S, TOLERANCE_S, 0])
def test_the_tolerance_bounds_are_inclusive(offset_s: int) -> None:
    result = verifier().verify(BODY, sign(BODY, SECRET, NOW + offset_s), now=NOW)
    assert isinstance(result, VerifiedBody)


def test_a_forged_stale_signature_is_reported_as_a_mismatch() -> None:
    result = verifier().verify(BODY, sign(BODY, OTHER_SECRET, NOW - 3600), now=NOW)
    assert reason_of(result) is Reason.SIGNATURE_MISMATCH


def test_only_verification_mints_a_verified_body() -> None:
    with pytest.raises(TypeError):
        VerifiedBody(body=BODY, signed_at=NOW)


def test_a_verifier_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        SignatureVerifier([], TOLERANCE_S)


def test_the_secret_never_shows_in_a_rejection() -> None:
    results = [
        verifier().verify(BODY, header, now=NOW)
        for header in (None, "x", f"t={NOW}", sign(BODY, OTHER_SECRET, NOW))
    ]
    for result in results:
        assert isinstance(result, Rejected)
        assert SECRET not in repr(result) and SECRET.removeprefix("whsec_") not in repr(result)


# --- cross-check against stripe-python ---------------------------------------------------

secrets_st = st.lists(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=24).map(
        lambda s: "whsec_" + s
    ),
    min_size=1,
    max_size=3,
    unique=True,
)
bodies = st.one_of(
    st.text(max_size=200).map(lambda s: s.encode("utf-8")),
    st.builds(lambda e: json.dumps(e).encode(), st.dictionaries(st.text(), st.integers())),
)
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def headers(
    draw: st.DrawFn, body: bytes, secrets: list[str], timestamp: int, valid: bool = False
) -> str:
    """Headers shaped like Stripe's: t, v1 entries (right or wrong, any secret, possibly
    one we do not know), v0 and unknown schemes, junk items, in any order. `valid` adds a
    right v1 entry for one of `secrets`."""
    signing = [*secrets, "whsec_unknown"]
    item = st.one_of(
        st.sampled_from(signing).map(lambda s: f"v1={hex_sig(s, timestamp, body)}"),
        hexes.map(lambda h: f"v1={h}"),
        st.sampled_from(signing).map(lambda s: f"v0={hex_sig(s, timestamp, body)}"),
        st.builds(lambda k, h: f"{k}={h}", st.sampled_from(["v2", "v9", "x", "T"]), hexes),
        st.sampled_from(["", "junk", "v1"]),
    )
    items = draw(st.lists(item, max_size=5))
    if valid:
        right = f"v1={hex_sig(draw(st.sampled_from(secrets)), timestamp, body)}"
        items.insert(draw(st.integers(0, len(items))), right)
    items.insert(draw(st.integers(0, len(items))), f"t={timestamp}")
    return ",".join(items)


def stripe_accepts(body: bytes, header: str, secrets: list[str], tolerance_s: int) -> bool:
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance_s)
            return True
        except stripe.SignatureVerificationError:
            pass
    return False


@settings(max_examples=300, deadline=None)
@given(
    body=bodies,
    secrets=secrets_st,
    offset_s=st.integers(-(TOLERANCE_S - 5), TOLERANCE_S),
    data=st.data(),
)
def test_whatever_stripe_accepts_within_tolerance_we_accept(
    body: bytes, secrets: list[str], offset_s: int, data: st.DataObject
) -> None:
    now = time.time()
    # Margin of 5 s on the stale side: stripe-python reads the clock itself.
    timestamp = int(now) + offset_s
    header = data.draw(headers(body, secrets, timestamp, valid=data.draw(st.booleans())))
    ours = verifier(*secrets, tolerance_s=TOLERANCE_S).verify(body, header, now=now)
    accepted = stripe_accepts(body, header, secrets, TOLERANCE_S)
    event(f"stripe-python accepts: {accepted}")
    if accepted:
        assert isinstance(ours, VerifiedBody), ours
    else:  # and the converse holds for headers of this shape
        assert isinstance(ours, Rejected)


@settings(max_examples=100, deadline=None)
@given(
    body=bodies,
    secrets=secrets_st,
    ahead_s=st.integers(TOLERANCE_S + 1, 10**7),
    data=st.data(),
)
def test_future_timestamps_stripe_accepts_we_refuse(
    body: bytes, secrets: list[str], ahead_s: int, data: st.DataObject
) -> None:
    now = time.time()
    timestamp = int(now) + ahead_s
    header = data.draw(headers(body, secrets, timestamp, valid=True))
    assume(stripe_accepts(body, header, secrets, TOLERANCE_S))  # not if it holds a bare "v1"
    ours = verifier(*secrets).verify(body, header, now=now)
    assert reason_of(ours) is Reason.TIMESTAMP_OUTSIDE_TOLERANCE


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=300), body=st.binary(max_size=100))
def test_any_header_gets_an_answer_never_an_exception(header: str, body: bytes) -> None:
    result = verifier().verify(body, header, now=NOW)
    assert isinstance(result, Rejected)
