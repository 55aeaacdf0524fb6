"""The balance ledger's pure decisions (sinks/balance_core.py): totals summed from the
window updates equal the totals computed from the distinct records at once, whatever the
order, the duplicates and the window boundaries."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.balance_core import (
    ClawbackFacts,
    RewardFacts,
    RewardState,
    Transition,
    update,
)

Record = RewardFacts | Transition | ClawbackFacts
RANK = {"pending": 0, "payable": 1, "paid": 2, "clawed_back": 3}


def reward(n: int, revision: int = 0) -> RewardFacts:
    """Reward `rw_n`: its content follows from its id (ids are deterministic)."""
    return RewardFacts(
        f"rw_{n}", f"code_{n % 3}", ("usd", "eur")[n % 2], n % 4 < 2, ("", "acct_1")[n % 5 == 0],
        100 * (n + 1), ("pending", "payable")[n % 2], ("default", "boost")[n % 2], 1 + n % 2,
        1_772_323_200 + n * 86_400 + n * 3_600, revision,
    )  # fmt: skip


def clawback(n: int) -> ClawbackFacts:
    facts = reward(n % 6)
    sign = 1 if n % 4 == 3 else -1
    return ClawbackFacts(
        f"cb_{n}", facts.reward_id, ("cancel", "negative_balance")[n % 3 == 0], sign * 7 * n,
        facts.referral_code, facts.currency, facts.livemode, facts.account,
    )  # fmt: skip


records = st.one_of(
    st.builds(reward, st.integers(0, 5), st.integers(0, 1)),
    st.builds(
        Transition,
        st.integers(0, 6).map(lambda n: f"rw_{n}"),  # rw_6 never arrives
        st.sampled_from(["pending", "payable", "paid", "clawed_back", "payout_rejected"]),
        st.integers(0, 3),  # few times: ties of effective_at
    ),
    st.builds(clawback, st.integers(0, 11)),
)


def expected(items: list[Record]) -> tuple[dict, dict]:
    """The totals of docs/ANALYTICS.md "Balances", from the distinct records at once."""
    rewards = {r.reward_id: r for r in items if isinstance(r, RewardFacts)}
    claws = {c.clawback_id: c for c in items if isinstance(c, ClawbackFacts)}
    latest: dict[str, tuple[int, int, str]] = {}
    for t in items:
        if isinstance(t, Transition) and t.status != "payout_rejected":
            latest[t.reward_id] = max(latest.get(t.reward_id, (-1, 0, "")),
                                      (t.effective_at, RANK[t.status], t.status))  # fmt: skip
    balances: dict = defaultdict(lambda: [0] * 6)
    programs: dict = defaultdict(lambda: [0] * 3)
    for r in rewards.values():
        mine = [c for c in claws.values() if c.reward_id == r.reward_id]
        status = latest[r.reward_id][2] if r.reward_id in latest else r.emission_status
        standing = r.amount_minor + sum(c.signed_minor for c in mine if c.mode == "cancel")
        line = balances[(r.referral_code, r.currency, r.livemode, r.account)]
        line[0] += 1
        line[1] += r.amount_minor
        if status in ("pending", "payable", "paid"):
            line[2 + ("pending", "payable", "paid").index(status)] += standing
        key = (r.program_id, r.program_version, r.currency, r.livemode, r.account,
               r.referral_code, r.paid_at - r.paid_at % 86_400)  # fmt: skip
        program = programs[key]
        program[0] += 1
        program[1] += r.amount_minor
        program[2] += sum(c.signed_minor for c in mine)
    for c in claws.values():
        line = balances[(c.referral_code, c.currency, c.livemode, c.account)]
        line[0] += 1
        line[5] += c.signed_minor
    return _nonzero(balances), _nonzero(programs)


def _nonzero(totals: dict) -> dict:
    return {key: list(values) for key, values in totals.items() if any(values)}


def replay(windows: list[list[Record]]) -> tuple[dict, dict, dict[str, RewardState]]:
    """What the sink does: per window, the touched states, the update, stored and summed."""
    stored: dict[str, RewardState] = {}
    balances: dict = defaultdict(lambda: [0] * 6)
    programs: dict = defaultdict(lambda: [0] * 3)
    for window in windows:
        touched = {item.reward_id for item in window}
        change = update(
            {rid: stored[rid] for rid in touched if rid in stored},
            [r for r in window if isinstance(r, RewardFacts)],
            [t for t in window if isinstance(t, Transition)],
            [c for c in window if isinstance(c, ClawbackFacts)],
        )
        stored.update((state.reward_id, state) for state in change.states)
        for key, values in change.balances.items():
            balances[key] = [a + b for a, b in zip(balances[key], values, strict=True)]
        for key, values in change.programs.items():
            programs[key] = [a + b for a, b in zip(programs[key], values, strict=True)]
    return _nonzero(balances), _nonzero(programs), stored


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=40), st.randoms(use_true_random=False))
def test_windows_in_any_order_with_duplicates_sum_to_the_totals(
    items: list[Record], rng: object
) -> None:
    import random

    assert isinstance(rng, random.Random)
    stream = items + rng.sample(items, len(items) // 3)  # re-emitted records
    rng.shuffle(stream)
    cuts = sorted(rng.sample(range(len(stream) + 1), min(4, len(stream) + 1)))
    windows = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    windows += [windows[rng.randrange(len(windows))]]  # a window read again after a crash
    balances, programs, _ = replay(windows)
    assert (balances, programs) == expected(items)


def test_a_window_applied_again_changes_nothing() -> None:
    window: list[Record] = [reward(1), Transition("rw_1", "paid", 5), clawback(1), clawback(7)]
    _, _, stored = replay([window])
    assert update(stored, [reward(1)], [Transition("rw_1", "paid", 5)], [clawback(7)]).empty


def test_a_status_before_its_reward_waits_in_the_state() -> None:
    early = update({}, transitions=[Transition("rw_0", "paid", 9)])
    assert early.balances == {} and early.programs == {}
    assert early.states[0].reward is None and early.states[0].status == "paid"
    later = update({"rw_0": early.states[0]}, rewards=[reward(0)])
    # the reward is paid from the start: its whole amount is in `paid`, none in pending
    assert later.balances == {("code_0", "usd", True, "acct_1"): [1, 100, 0, 0, 100, 0]}


def test_payout_rejected_and_an_earlier_transition_do_not_change_the_status() -> None:
    state = RewardState("rw_1", reward(1)).with_transition("paid", 5)
    assert state.with_transition("payout_rejected", 9) is state
    assert state.with_transition("payable", 4) is state
    assert state.with_transition("payable", 5) is state  # a tie: paid ranks after payable
    assert state.with_transition("clawed_back", 5).status == "clawed_back"
