"""The balance ledger's decisions, pure: a reward's state, and what a window changes.

A reward's balance figures (docs/ANALYTICS.md, "Balances") depend on records of three
topics: the reward itself (amount, referrer, emission status), its status transitions (the
latest by effective_at, then status order; payout_rejected changes nothing) and its
clawbacks (cancel-mode ones lower the standing amount). `RewardState` holds what those
figures need, and every `with_*` step is idempotent and commutative: a record applied
twice, or records applied in any order, give the same state. So a window read again, a
record re-emitted later, or a status that came before its reward change nothing more.

`update` takes the old states of the rewards a window touches and the window's records
and returns the new states and the change of every total: minus the old state's
contribution, plus the new state's. A clawback is counted once per clawback id (the ids
are in its reward's state) in `clawed_back` of its own referrer, currency and mode.

Nothing here does I/O or imports ClickHouse, Kafka or the settings (tests/unit/test_layout.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

# The reference's order of statuses at the same effective_at (sinks/ddl/0003,
# reward_states); any other status ranks after them. payout_rejected is not a status.
STATUS_RANK = {"pending": 0, "payable": 1, "paid": 2, "clawed_back": 3}
OTHER_RANK = 4
IGNORED_STATUS = "payout_rejected"
CANCEL_MODE = "cancel"


class RewardFacts(NamedTuple):
    """What the balances need of a reward record (any revision: money never changes)."""

    reward_id: str
    referral_code: str
    currency: str
    livemode: bool
    account: str
    amount_minor: int
    emission_status: str
    program_id: str
    program_version: int
    paid_at: int  # unix seconds
    revision: int


class Transition(NamedTuple):
    """A status record: the reward's status from `effective_at` (unix seconds) on."""

    reward_id: str
    status: str
    effective_at: int


class ClawbackFacts(NamedTuple):
    """A clawback (signed_minor < 0) or reinstatement (> 0) of a reward."""

    clawback_id: str
    reward_id: str
    mode: str
    signed_minor: int
    referral_code: str
    currency: str
    livemode: bool
    account: str


# (effective_at, rank, status): the latest transition is the greatest key. The status in
# the key breaks a tie between two unknown statuses of one time (the reference leaves
# that case to argMax; the known statuses never tie, each has its own rank).
StatusKey = tuple[int, int, str]


class RewardState(NamedTuple):
    """A reward's sufficient statistics (a tuple: the sink makes one per touched reward)."""

    reward_id: str
    reward: RewardFacts | None = None
    latest: StatusKey | None = None
    clawback_ids: tuple[str, ...] = ()  # sorted
    cancelled_minor: int = 0
    corrections_minor: int = 0

    @property
    def status(self) -> str:
        """The current status: the latest transition's, else the emission status."""
        if self.latest is not None:
            return self.latest[2]
        return self.reward.emission_status if self.reward is not None else ""

    def with_reward(self, facts: RewardFacts) -> RewardState:
        # Revisions differ only in payment ids; the highest one is what the table shows.
        if self.reward is not None and self.reward.revision >= facts.revision:
            return self
        return self._replace(reward=facts)

    def with_transition(self, status: str, effective_at: int) -> RewardState:
        if status == IGNORED_STATUS:
            return self
        key = (effective_at, STATUS_RANK.get(status, OTHER_RANK), status)
        if self.latest is not None and self.latest >= key:
            return self
        return self._replace(latest=key)

    def with_clawback(self, clawback: ClawbackFacts) -> RewardState:
        if clawback.clawback_id in self.clawback_ids:
            return self
        cancelled = clawback.signed_minor if clawback.mode == CANCEL_MODE else 0
        return self._replace(
            clawback_ids=tuple(sorted((*self.clawback_ids, clawback.clawback_id))),
            cancelled_minor=self.cancelled_minor + cancelled,
            corrections_minor=self.corrections_minor + clawback.signed_minor,
        )


# balance_totals: (referral_code, currency, livemode, account) ->
#   (lines, rewards_minor, pending_minor, payable_minor, paid_minor, clawbacks_minor)
BalanceKey = tuple[str, str, bool, str]
BALANCE_FIELDS = ("lines", "rewards_minor", "pending_minor", "payable_minor", "paid_minor",
                  "clawbacks_minor")  # fmt: skip
# program totals: (program_id, program_version, currency, livemode, account, referral_code,
#   the start of the reward's payment day in unix seconds) ->
#   (rewards, rewards_minor, clawbacks_minor); the table's views make the day and month.
ProgramKey = tuple[str, int, str, bool, str, str, int]
PROGRAM_FIELDS = ("rewards", "rewards_minor", "clawbacks_minor")
_STATUS_COLUMN = {"pending": 2, "payable": 3, "paid": 4}
_DAY_S = 86_400


def _add(into: dict, key: object, values: Iterable[int], sign: int) -> None:
    current = into.get(key)
    signed = [sign * value for value in values]
    into[key] = signed if current is None else [a + b for a, b in zip(current, signed, strict=True)]


def _contribute(state: RewardState, balances: dict, programs: dict, sign: int) -> None:
    """Add (`sign` 1) or take away (-1) what a reward's state puts in the totals, apart from
    its clawbacks' own clawed_back lines (counted once each, when first seen)."""
    facts = state.reward
    if facts is None:
        return  # a status or clawback waiting for its reward: nothing in the totals yet
    line = [1, facts.amount_minor, 0, 0, 0, 0]
    column = _STATUS_COLUMN.get(state.status)
    if column is not None:
        line[column] = facts.amount_minor + state.cancelled_minor  # the standing amount
    key = (facts.referral_code, facts.currency, facts.livemode, facts.account)
    _add(balances, key, line, sign)
    day = facts.paid_at - facts.paid_at % _DAY_S
    program = (facts.program_id, facts.program_version, facts.currency, facts.livemode,
               facts.account, facts.referral_code, day)  # fmt: skip
    _add(programs, program, (1, facts.amount_minor, state.corrections_minor), sign)


@dataclass(frozen=True)
class Update:
    """What one window changes: the states to store, the non-zero total changes."""

    states: list[RewardState]
    balances: dict[BalanceKey, list[int]]
    programs: dict[ProgramKey, list[int]]

    @property
    def empty(self) -> bool:
        return not self.states and not self.balances and not self.programs


def update(
    old: Mapping[str, RewardState],
    rewards: Iterable[RewardFacts] = (),
    transitions: Iterable[Transition] = (),
    clawbacks: Iterable[ClawbackFacts] = (),
) -> Update:
    """The new states of the rewards the records touch (`old` holds the stored states of
    those rewards; a reward missing there has none yet) and what changes in the totals."""
    new: dict[str, RewardState] = {}

    def state(reward_id: str) -> RewardState:
        found = new.get(reward_id)
        if found is None:
            found = old.get(reward_id) or RewardState(reward_id)
        return found

    balances: dict[BalanceKey, list[int]] = {}
    programs: dict[ProgramKey, list[int]] = {}
    for facts in rewards:
        new[facts.reward_id] = state(facts.reward_id).with_reward(facts)
    for transition in transitions:
        new[transition.reward_id] = state(transition.reward_id).with_transition(
            transition.status, transition.effective_at
        )
    for clawback in clawbacks:
        before = state(clawback.reward_id)
        after = before.with_clawback(clawback)
        if after is not before:  # first time this clawback id is counted
            key = (clawback.referral_code, clawback.currency, clawback.livemode, clawback.account)
            _add(balances, key, (1, 0, 0, 0, 0, clawback.signed_minor), 1)
            new[clawback.reward_id] = after
    changed = []
    for reward_id, after in new.items():
        before = old.get(reward_id) or RewardState(reward_id)
        if after == before:
            continue
        changed.append(after)
        _contribute(before, balances, programs, -1)
        _contribute(after, balances, programs, 1)
    return Update(
        changed,
        {key: values for key, values in balances.items() if any(values)},
        {key: values for key, values in programs.items() if any(values)},
    )
