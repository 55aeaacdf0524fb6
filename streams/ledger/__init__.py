"""The customer side's pure decisions: no Kafka, no settings, no clock (time is an argument).

Module map:
  stripe_payloads  a `stripe.events` record parsed into the fields the ledger reads, for
                   every API family (pre-basil and basil+ payload shapes)
  customer_ledger  decide(state, event) -> new state + outputs; tick; attribute; probes
  ledger_state     the per-customer state (format 2) and its JSON form, with migration
  compaction       settled payments folded into summaries; windowed event-id dedup
  attribution      which referral touch wins, from which Stripe field
  programs         reward programs and their versions (rates, caps, tenure rules)
  rewards          reward math (Decimal rates, one rounding rule)
  tenure           the tenure anchor of a subscriber
  records          the output records (rewards, attributions) with deterministic ids
  payment_links    the payment-link agent's decisions (owner of a payment, parked events)
  required_events  the Stripe event types refstream needs, per API family, and why
  config           the ledger's windows and metadata keys (LedgerConfig)
  invariants       routing invariants (an event reaching the wrong state)

Refund, dispute and payout math is in streams.corrections; the Kafka runtime that calls
these is streams.worker.
"""
