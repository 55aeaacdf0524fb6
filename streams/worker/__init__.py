"""The worker process: Kafka in, decisions by the pure cores, Kafka out.

Module map:
  runtime    the consumer loop: batches, rebalances, the crash-safe order (outputs acked,
             then state, then offsets), ticks; `main` is `refstream worker`
  topology   which agent reads which topics and keeps which tables; topic specs
  tables     table partitions in memory, durable through compacted changelog topics
  emitter    encodes outputs and dead letters, sends them, waits for their acks per batch
  customers  the customer agent (stripe.events, rerouted events, customer ticks)
  links      the payment-link agent (refstream.links)
  referrers  the referrer agent (rewards, corrections, payouts, referrer ticks)
  clock      worker time

The agents take their table partitions and the emitter; they decide through
streams.worker_core (CustomerCore, ReferrerCore), which wraps the pure cores
(streams.customer_ledger, streams.corrections, streams.payment_links): nothing below
worker_core imports Kafka or settings.
"""
