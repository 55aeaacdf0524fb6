"""`refstream payouts mark`: record that rewards were paid out (for teams without a payout
service producing to `referral.payouts`).

The record is published to `referral.payouts` keyed by the referral code; the worker then
applies it whole or rejects it whole with a reason (a `payout_rejected` status per reward on
`referral.status`). A payout id applies once: re-running the same command is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aiokafka import AIOKafkaProducer

from refstream import topics
from refstream.avro_codec import AvroCodec
from refstream.settings import Settings


def payout_record(args: argparse.Namespace, now_s: int) -> dict[str, object]:
    if args.amount_minor < 0:
        raise ValueError("--amount-minor must be >= 0 (minor units, e.g. cents)")
    if len(args.currency) != 3 or not args.currency.isalpha():
        raise ValueError(f"--currency must be an ISO 4217 code, got {args.currency!r}")
    if not args.reward_id:
        raise ValueError("name at least one --reward-id")
    return {
        "payout_id": args.payout_id,
        "referral_code": args.referral_code,
        "reward_ids": list(dict.fromkeys(args.reward_id)),
        "amount_minor": args.amount_minor,
        "currency": args.currency.lower(),
        "livemode": args.live,
        "paid_at": args.paid_at or now_s,
    }


async def publish(settings: Settings, record: dict[str, object]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.kafka.topic(topics.PAYOUTS),
            key=str(record["referral_code"]).encode(),
            value=AvroCodec.for_schema("payout").encode(record),
        )
    finally:
        await producer.stop()


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        record = payout_record(args, int(time.time()))
    except ValueError as exc:
        print(f"refstream payouts: {exc}", file=sys.stderr)
        return 2
    asyncio.run(publish(settings, record))
    print(f"payout {record['payout_id']} recorded for {record['referral_code']}")
    return 0
