"""The Stripe payload factories of the tests: a re-export of simulator.stripe_factory, which
is where they live now (the `refstream simulate` command builds its traffic with them)."""

from simulator.stripe_factory import *  # noqa: F403
