"""Realistic, signed Stripe traffic for refstream, with its own expected ledger.

    scenario = generate(ScenarioConfig(customers=200, months=12, seed=7))
    scenario.events            # Stripe events (dicts) in Stripe time order
    scenario.expected          # the ledger they must produce, computed independently
    plan = delivery_plan(scenario.events, DeliveryOptions(duplicates=0.1, seed=7))

`refstream simulate` (simulator/cli.py) posts such a plan to the ingress over HTTP.
"""
