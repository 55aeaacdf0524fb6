"""Per-customer state over ten simulated years: its size, and the cost of one decision.

    .venv/bin/python bench/state_bench.py [--years 10] [--customers 2]

Drives the worker's real CustomerCore (streams/worker/cores.py) in memory, through
tests/support/core_driver.py (the link agent, ticks and probe answers as the worker does
them), with `customers` subscribers per API family (pre-basil and basil payload shapes)
paying a monthly invoice for `years` years, with refunds, a refund that fails, chargebacks
won and lost, and Stripe retries (tests/support/long_story.py). After every decision it
records the size of the state that decision stored (the bytes a single event reads and
writes) and the time CustomerCore took (load, decide, corrections, dump).

Prints, per simulated year, the largest and mean state and the mean cost per decision,
then year 1 against the last year as ratios measured in this run. Targets (issue 10):
largest state <= 16 KB, cost of the last year within 2x of year 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.stripe_factory import API_VERSIONS, DEFAULT_START
from streams.ledger.config import DAY_S
from streams.ledger.programs import ProgramVersion, parse_program
from tests.support.core_driver import CoreDriver
from tests.support.long_story import long_story

YEAR_S = 365 * DAY_S
PROGRAM = ProgramVersion(parse_program({"id": "std", "rate": "20%", "hold_days": 30}), 1)


def run(years: int, customers: int) -> CoreDriver:
    driver = CoreDriver({"std": PROGRAM})
    events = []
    for family in API_VERSIONS:
        for n in range(customers):
            seed = 1_000 * (API_VERSIONS.index(family) + 1) + n
            events += long_story(family, seed=seed, months=12 * years, code=f"REF{n}")
    events.sort(key=lambda e: e["created"])
    for event in events:
        driver.deliver(event, now=event["created"] + 5)
    driver.tick_until(max(e["created"] for e in events) + 30 * DAY_S)
    return driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--customers", type=int, default=2, help="per API family")
    args = parser.parse_args()
    driver = run(args.years, args.customers)
    by_year: dict[int, list[tuple[int, float]]] = {}
    for step in driver.steps:
        if step.event_created is None or step.outcome == "duplicate":
            continue  # ticks and retries: counted in the per-year totals below
        year = (step.event_created - DEFAULT_START) // YEAR_S + 1
        by_year.setdefault(min(year, args.years), []).append((step.state_bytes, step.seconds))
    print(f"{len(driver.steps)} decisions, {2 * args.customers} customers, {args.years} years")
    print("year  events  state max B  state mean B  cost median us  cost mean us")
    for year in sorted(by_year):
        sizes = [s for s, _ in by_year[year]]
        costs = [c for _, c in by_year[year]]
        print(
            f"{year:4d}  {len(sizes):6d}  {max(sizes):11d}  {statistics.mean(sizes):12.0f}"
            f"  {statistics.median(costs) * 1e6:14.0f}  {statistics.mean(costs) * 1e6:12.0f}"
        )
    first, last = by_year[1], by_year[max(by_year)]
    size_first, size_last = max(s for s, _ in first), max(s for s, _ in last)
    # Medians: the machine is shared, and a mean follows whatever else ran at that moment.
    cost_first = statistics.median(c for _, c in first)
    cost_last = statistics.median(c for _, c in last)
    print(f"state max: year 1 {size_first} B, year {max(by_year)} {size_last} B (target <= 16384)")
    print(
        f"cost per event (median): year 1 {cost_first * 1e6:.0f} us, year {max(by_year)} "
        f"{cost_last * 1e6:.0f} us, ratio {cost_last / cost_first:.2f} (target <= 2.00)"
    )


if __name__ == "__main__":
    main()
