"""The Stripe webhook ingress: verify -> envelope -> publish -> 2xx after the Kafka ack.

Modules, one job each:
  signature  Stripe-Signature verification over the raw body (pure) -> VerifiedBody
  envelope   VerifiedBody -> Envelope (the stripe_event Avro record and its partition key)
  publisher  Envelope -> Kafka ack (one shared idempotent producer, supervised)
  rejection  the machine reasons of every 4xx
  metrics    Prometheus metrics of one app
  app        the aiohttp app (create_app), server  `refstream ingress`
"""
