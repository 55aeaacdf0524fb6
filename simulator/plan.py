"""The order a stream is delivered in: duplicated and out of order, like Stripe delivers.

    plan = delivery_plan(scenario.events, DeliveryOptions(seed=7, duplicates=0.2,
                                                          shuffle_window=50,
                                                          customer_shuffle=0.1))

Starting from Stripe time order, in three seeded steps:
1. whole-stream shuffle per customer: for a share of the customers (by routing key and
   mode), that customer's events trade places among themselves, so its whole history
   arrives in random order while other customers keep theirs;
2. duplicates: `duplicates` extra deliveries per event (1.0 = every event twice, 0.25 = a
   quarter of them twice), each placed at a random point after the original;
3. sliding-window shuffle: a buffer of `shuffle_window` deliveries releases a random one
   at a time, so a delivery moves by about that many places, not across the whole stream.

Events are neither copied nor changed: a duplicate is the same event, delivered again.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.stripe_factory import Json, routing_key

MAX_DUPLICATES = 10.0
MAX_SHUFFLE_WINDOW = 1_000_000


class PlanError(ValueError):
    """A delivery option out of range."""


@dataclass(frozen=True)
class DeliveryOptions:
    seed: int = 1
    duplicates: float = 0.0  # extra deliveries per event
    shuffle_window: int = 0  # 0: no local reordering
    customer_shuffle: float = 0.0  # share of customers delivered in random order

    def validate(self) -> None:
        if not 0.0 <= self.duplicates <= MAX_DUPLICATES:
            raise PlanError(f"duplicates must be within 0..{MAX_DUPLICATES}, got {self.duplicates}")
        if not 0 <= self.shuffle_window <= MAX_SHUFFLE_WINDOW:
            raise PlanError(
                f"shuffle window must be within 0..{MAX_SHUFFLE_WINDOW}, got {self.shuffle_window}"
            )
        if not 0.0 <= self.customer_shuffle <= 1.0:
            raise PlanError(f"customer shuffle must be within 0..1, got {self.customer_shuffle}")


def delivery_plan(events: Sequence[Json], options: DeliveryOptions) -> list[Json]:
    """The deliveries of `events` (given in Stripe time order), in delivery order."""
    options.validate()
    rng = random.Random(options.seed)
    ordered = shuffle_customers(list(events), options.customer_shuffle, rng)
    with_copies = add_duplicates(ordered, options.duplicates, rng)
    return window_shuffle(with_copies, options.shuffle_window, rng)


def shuffle_customers(events: list[Json], share: float, rng: random.Random) -> list[Json]:
    slots: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        slots[(routing_key(event)[0], bool(event.get("livemode")))].append(index)
    out = list(events)
    for key in sorted(slots):  # sorted: the draw order must not depend on dict history
        if len(slots[key]) < 2 or rng.random() >= share:
            continue
        mine = [events[i] for i in slots[key]]
        rng.shuffle(mine)
        for index, event in zip(slots[key], mine, strict=True):
            out[index] = event
    return out


def add_duplicates(events: list[Json], ratio: float, rng: random.Random) -> list[Json]:
    n = len(events)
    whole, fraction = int(ratio), ratio - int(ratio)
    copies = [i for i in range(n) for _ in range(whole)]
    copies += rng.sample(range(n), k=round(fraction * n))
    # Sort positions: an original at its index, each copy at a random point after it.
    keyed = [(float(i), 0, events[i]) for i in range(n)]
    keyed += [(rng.uniform(i, n), 1, events[i]) for i in copies]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [event for _, _, event in keyed]


def window_shuffle(items: list[Json], window: int, rng: random.Random) -> list[Json]:
    if window <= 0:
        return list(items)
    out: list[Json] = []
    buffer: list[Json] = []
    for item in items:
        buffer.append(item)
        if len(buffer) > window:
            pick = rng.randrange(len(buffer))
            buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
            out.append(buffer.pop())
    rng.shuffle(buffer)
    out.extend(buffer)
    return out
