"""The worker process: Kafka in, decisions by the pure cores, Kafka out.

Module map:
  runtime        the consumer loop: batches, rebalances, the crash-safe order (outputs
                 acked, then state, then offsets), ticks; `main` is `refstream worker`
  topology       which agent reads which topics and keeps which tables; topic specs
  tables         table partitions in memory, durable through compacted changelog topics;
                 decoded views that encode a state once per batch
  emitter        encodes outputs and dead letters, sends them, waits for their acks per batch
  customers      the customer agent (stripe.events, rerouted events, customer ticks)
  links          the payment-link agent (refstream.links)
  referrers      the referrer agent (rewards, corrections, payouts, referrer ticks)
  cores          CustomerCore and ReferrerCore: table values <-> the pure cores' states,
                 routing, and the topic and schema of every output (no Kafka client)
  due            when each table key next needs a tick (minute buckets in a table)
  stripe_lookup  the Stripe API client of the customer lookup
  clock          worker time

The agents take their table partitions and the emitter and decide through `cores`, which
wraps the pure decision code (streams.ledger.customer_ledger, streams.corrections,
streams.ledger.payment_links): none of that imports Kafka or settings.
"""
