"""Record -> row mappings of every sink table, and the DDL they must agree with."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.settings import SettingsError, load_settings
from sinks import clawbacks, dead_letters, stripe_events
from sinks.consumer import ALL_SPECS
from sinks.migrations import DDL_DIR, load_migrations, split_statements
from sinks.rows import RowError, row_dict
from tests.support import sink_scenario as scenario


def _table_columns() -> dict[str, list[str]]:
    """Column names of every CREATE TABLE in the DDL, in order."""
    tables = {}
    for migration in load_migrations():
        for statement in migration.statements:
            match = re.match(
                r"CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*?)\)\s*ENGINE", statement, re.S
            )
            if match:
                lines = [line.strip() for line in match[2].splitlines() if line.strip()]
                tables[match[1]] = [line.split()[0] for line in lines]
            copied = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) AS (\w+)\s", statement)
            if copied:  # the columns of another table
                tables[copied[1]] = list(tables[copied[2]])
            added = re.match(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", statement)
            if added:  # later migrations append columns, in order
                tables[added[1]].append(added[2])
    return tables


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda spec: spec.table)
def test_every_mapping_fills_exactly_the_columns_of_its_table(spec: Any) -> None:
    assert list(spec.columns) == _table_columns()[spec.table]
    _schema, make, _key = scenario.RECORDS[spec.topic]
    for record in make():
        row = spec.to_row(record)
        assert len(row) == len(spec.columns)


# The ledgers' tables are exact by their own keys and states, not by a window's token: they
# are created without a dedup window. The MergeTree ones get one in 0008, where every
# write to them carries a fresh token (sinks/fanout.py), and a retried apply of the same
# staged block is dropped by it (tests/integration/test_sinks_fanout.py checks the engine).
# The referrer ledger counts each record id once (sinks/ledger.py).
LEDGER_TABLES = ("ledger_counted", "referrer_ledger_daily", "referrer_ledger_monthly",
                 "referrer_statement_lines", "ledger_lines")  # fmt: skip
# The revenue ledger (0006) is exact by content (sinks/revenue_ledger.py): a delta insert that
# looks like an earlier one is a real change and must not be dropped either.
LEDGER_TABLES += ("revenue_keys", "revenue_customers", "revenue_attributions", "revenue_daily",
                  "revenue_monthly", "revenue_customer_daily", "revenue_in")  # fmt: skip
# Null tables the sink's Avro containers pass through (0005): they store nothing.
NULL_TABLES = ("rewards_avro_check", "reward_status_avro_check", "attributions_avro_check",
               "lifecycle_avro_check", "ledger_rewards_in")  # fmt: skip
# The balance ledger (0007) is exact by its per-reward states (sinks/balance_ledger.py): a
# change that looks like an earlier one is a real change; the scratch tables are emptied
# before each use.
LEDGER_TABLES += ("balance_reward_states", "balance_totals", "program_totals_daily",
                  "program_totals_monthly", "balance_scratch_rewards",
                  "balance_scratch_status")  # fmt: skip
NULL_TABLES += ("balance_lines",)
# The staged copies of the ledgers' writes (0008): one staged block at a time, cleared after.
LEDGER_TABLES += ("ledger_lines_pending", "revenue_in_pending", "balance_lines_pending",
                  "balance_scratch_changed")  # fmt: skip


def test_every_table_remembers_insert_tokens() -> None:
    for migration in load_migrations():
        for statement in migration.statements:
            if statement.startswith("CREATE TABLE"):
                name = statement.split()[5]
                if name in LEDGER_TABLES or name in NULL_TABLES:
                    assert "non_replicated_deduplication_window" not in statement, name
                else:
                    assert "non_replicated_deduplication_window" in statement, statement[:60]


def test_clawbacks_are_stored_signed() -> None:
    by_id = {
        r["clawback_id"]: row_dict(clawbacks.SPEC, clawbacks.to_row(r))
        for r in scenario.clawbacks()
    }
    assert by_id["cb_A1a"]["signed_amount_minor"] == -500
    assert by_id["cb_A1a"]["amount_minor"] == 500
    assert by_id["cb_A2w"]["signed_amount_minor"] == 1000


def test_a_clawback_of_unknown_kind_or_negative_amount_is_refused() -> None:
    record = scenario.clawbacks()[0]
    with pytest.raises(RowError, match="kind"):
        clawbacks.to_row(dict(record, kind="refund"))
    with pytest.raises(RowError, match=">= 0"):
        clawbacks.to_row(dict(record, amount_minor=-1))


def test_timestamps_outside_the_column_range_are_refused() -> None:
    reward = scenario.rewards()[0]
    with pytest.raises(RowError, match="paid_at"):
        ALL_SPECS[2].to_row(dict(reward, paid_at=-5))
    with pytest.raises(RowError, match="received_at_ms"):
        stripe_events.to_row(dict(scenario.stripe_events()[0], received_at_ms=2**62))


def _event_row(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    record = scenario.stripe_event("evt_1", event_type, scenario.D1, obj)
    return row_dict(stripe_events.SPEC, stripe_events.to_row(record))


def test_a_basil_invoice_lists_the_charges_that_paid_it() -> None:
    row = _event_row(
        "invoice.paid",
        {
            "id": "in_1",
            "object": "invoice",
            "customer": "cus_1",
            "currency": "USD",
            "amount_paid": 1234,
            "parent": {"subscription_details": {"subscription": "sub_1"}},
            "payments": {"data": [{"payment": {"charge": "ch_1", "payment_intent": "pi_1"}}]},
        },
    )
    assert (row["money_kind"], row["money_key"], row["money_minor"]) == (
        "invoice",
        "invoice:in_1",
        1234,
    )
    assert row["payment_refs"] == ["ch_1", "pi_1"]
    assert (row["customer_key"], row["subscription_id"], row["currency"]) == (
        "cus_1",
        "sub_1",
        "usd",
    )


def test_a_pre_basil_invoice_charge_is_not_revenue_twice() -> None:
    row = _event_row(
        "charge.succeeded",
        {
            "id": "ch_1",
            "object": "charge",
            "customer": "cus_1",
            "amount": 500,
            "invoice": {"id": "in_1"},
        },
    )
    assert row["money_kind"] == ""
    assert row["invoice_id"] == "in_1"  # an expanded object is read as its id


def test_a_guest_charge_is_keyed_by_its_payment_intent() -> None:
    row = _event_row(
        "charge.succeeded",
        {
            "id": "ch_1",
            "object": "charge",
            "customer": None,
            "amount": 500,
            "amount_captured": 500,
            "payment_intent": "pi_9",
        },
    )
    assert (row["customer_id"], row["customer_key"], row["money_minor"]) == ("", "pi_9", 500)


def test_refunds_keep_the_running_total_and_lost_disputes_their_amount() -> None:
    refund = _event_row(
        "charge.refunded", {"id": "ch_1", "object": "charge", "amount": 900, "amount_refunded": 400}
    )
    assert (refund["money_kind"], refund["money_key"], refund["money_minor"]) == (
        "refund",
        "refund:ch_1",
        400,
    )
    won = _event_row(
        "charge.dispute.closed", {"id": "dp_1", "object": "dispute", "status": "won", "amount": 900}
    )
    lost = _event_row(
        "charge.dispute.closed",
        {"id": "dp_1", "object": "dispute", "status": "lost", "amount": 900, "charge": "ch_1"},
    )
    assert won["money_kind"] == ""
    assert (lost["money_kind"], lost["money_minor"], lost["charge_id"]) == (
        "dispute_lost",
        900,
        "ch_1",
    )


def test_oddly_typed_fields_become_empty_not_errors() -> None:
    row = _event_row(
        "invoice.paid",
        {
            "id": "in_1",
            "object": "invoice",
            "customer": 42,
            "amount_paid": "1000",
            "currency": None,
            "payments": "nope",
        },
    )
    assert (row["customer_id"], row["money_minor"], row["currency"], row["payment_refs"]) == (
        "",
        0,
        "",
        [],
    )


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
def test_an_unparsable_body_is_kept_with_its_error(body: bytes) -> None:
    record = dict(scenario.stripe_events()[0], body=body)
    row = row_dict(stripe_events.SPEC, stripe_events.to_row(record))
    assert row["body"] == body
    assert row["body_error"]
    assert row["money_kind"] == "" and row["customer_id"] == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
stripe_keys = st.sampled_from(
    [
        "id",
        "customer",
        "amount",
        "amount_paid",
        "amount_refunded",
        "currency",
        "invoice",
        "charge",
        "payment_intent",
        "payments",
        "parent",
        "status",
        "subscription",
        "captured",
        "amount_captured",
    ]
)
stripe_types = st.sampled_from(
    [
        "invoice.paid",
        "charge.succeeded",
        "charge.refunded",
        "charge.dispute.closed",
        "customer.created",
        "x.y",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    event_type=stripe_types,
    object_type=st.sampled_from(["invoice", "charge", "dispute", "customer", "invoice_payment"]),
    fields=st.dictionaries(stripe_keys, json_values, max_size=10),
)
def test_no_stripe_body_makes_the_mapping_raise(
    event_type: str, object_type: str, fields: dict[str, Any]
) -> None:
    obj = dict(fields, object=object_type)
    record = scenario.stripe_event("evt_h", event_type, scenario.D1, {"object": object_type})
    record["body"] = json.dumps({"type": event_type, "data": {"object": obj}}).encode()
    row = row_dict(stripe_events.SPEC, stripe_events.to_row(record))
    assert isinstance(row["money_minor"], int) and -(2**63) <= row["money_minor"] < 2**63
    assert all(isinstance(ref, str) and ref for ref in row["payment_refs"])


def test_a_sink_dead_letter_is_the_same_row_on_every_retry() -> None:
    error = ValueError("bad")
    first = dead_letters.sink_failure_row(
        "t.referral.rewards", 3, 17, b"k", b"\x00", 1_700_000_000_000, error
    )
    again = dead_letters.sink_failure_row(
        "t.referral.rewards", 3, 17, b"k", b"\x00", 1_700_000_000_000, error
    )
    assert first == again
    row = row_dict(dead_letters.SPEC, first)
    assert row["dead_letter_id"] == "t.referral.rewards:3:17:sink"
    assert (row["stage"], row["value"], row["error_type"]) == ("sink", b"\x00", "ValueError")


def test_migration_files_split_into_idempotent_statements() -> None:
    assert [m.version for m in load_migrations()] == sorted(m.version for m in load_migrations())
    assert split_statements(
        "-- c\nCREATE TABLE IF NOT EXISTS a (x Int8) ENGINE = Log;\n\n-- only\n"
    ) == ["CREATE TABLE IF NOT EXISTS a (x Int8) ENGINE = Log"]
    assert DDL_DIR.is_dir()


def test_a_non_idempotent_migration_is_refused(tmp_path: Any) -> None:
    from sinks.migrations import MigrationError

    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE t (x Int8) ENGINE = Log;\n")
    with pytest.raises(MigrationError, match="not idempotent"):
        load_migrations(tmp_path)


def test_sink_settings_defaults_and_validation() -> None:
    sink = load_settings({}).sink
    assert sink.embedded and sink.clickhouse_dsn.value.startswith("chdb:///")
    assert sink.clickhouse_dsn.value.endswith("/.local/clickhouse")
    server = load_settings({"REFSTREAM_CLICKHOUSE_DSN": "https://u:s3cret@ch.example:8443/db"}).sink
    assert not server.embedded
    assert server.clickhouse_target == "https://ch.example:8443/db"
    assert "s3cret" not in repr(server)
    for bad in ("ftp://x", "chdb://relative/path", "http://"):
        with pytest.raises(SettingsError) as info:
            load_settings({"REFSTREAM_CLICKHOUSE_DSN": bad + "?password=s3cret"})
        assert "s3cret" not in str(info.value)
    with pytest.raises(SettingsError, match="RETRY_MAX_MS"):
        load_settings(
            {"REFSTREAM_SINK_RETRY_INITIAL_MS": "500", "REFSTREAM_SINK_RETRY_MAX_MS": "100"}
        )
