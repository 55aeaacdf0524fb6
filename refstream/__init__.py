"""refstream: Stripe webhooks to exact referral revenue attribution, on Kafka and ClickHouse."""

__version__ = "0.1.0"
