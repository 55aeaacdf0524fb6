"""`refstream payouts mark` builds a valid payout record or names what is wrong."""

from __future__ import annotations

import pytest

from refstream.avro_codec import AvroCodec
from refstream.cli import build_parser
from streams.payouts_cli import main, payout_record


def parse(*extra: str):
    return build_parser().parse_args(
        ["payouts", "mark", "--payout-id", "po_1", "--referral-code", "ALICE", *extra]
    )


def test_record_round_trips_through_the_payout_schema() -> None:
    args = parse(
        "--reward-id",
        "r1",
        "--reward-id",
        "r2",
        "--reward-id",
        "r1",
        "--amount-minor",
        "1234",
        "--currency",
        "USD",
    )
    record = payout_record(args, now_s=1_700_000_000)
    assert record["reward_ids"] == ["r1", "r2"]  # a repeated id is paid once
    assert record["currency"] == "usd" and record["livemode"] is False
    assert record["paid_at"] == 1_700_000_000
    codec = AvroCodec.for_schema("payout")
    assert codec.decode(codec.encode(record)) == record


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--amount-minor", "-1", "--currency", "usd", "--reward-id", "r"], "amount-minor"),
        (["--amount-minor", "5", "--currency", "dollars", "--reward-id", "r"], "currency"),
        (["--amount-minor", "5", "--currency", "usd"], "reward-id"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(None, parse(*extra)) == 2  # type: ignore[arg-type]
    assert message in capsys.readouterr().err
