"""The Stripe payload factories of the tests: a re-export of simulator.stripe_factory, which
is where they live now (the `refstream simulate` command builds its traffic with them)."""

from simulator.stripe_factory import *  # noqa: F403
from simulator.stripe_factory import (
    API_VERSIONS,
    BASIL,
    CODE_PLACES,
    DAY,
    DEFAULT_START,
    PRE_BASIL,
    CustomerStory,
    Json,
    Line,
    ScenarioClock,
    StripeFactory,
    event_bytes,
    one_time_story,
    referral_metadata,
    routing_key,
    signature_header,
    subscription_story,
)

__all__ = [
    "API_VERSIONS",
    "BASIL",
    "CODE_PLACES",
    "DAY",
    "DEFAULT_START",
    "PRE_BASIL",
    "CustomerStory",
    "Json",
    "Line",
    "ScenarioClock",
    "StripeFactory",
    "event_bytes",
    "one_time_story",
    "referral_metadata",
    "routing_key",
    "signature_header",
    "subscription_story",
]
