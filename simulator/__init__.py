"""Realistic, signed Stripe traffic for refstream, with its own expected ledger.

    from simulator.scenario import ScenarioConfig, generate
    from simulator.plan import DeliveryOptions, delivery_plan
    from simulator.deliver import DeliveryLimits, deliver

    scenario = generate(ScenarioConfig(customers=200, months=12, seed=7))
    scenario.events                    # Stripe events (dicts), Stripe time order
    scenario.expected_document()       # the expected ledger as JSON (simulator/expected.py)
    scenario.program.toml()            # the one program that ledger assumes
    plan = delivery_plan(scenario.events, DeliveryOptions(seed=7, duplicates=1.0,
                                                          shuffle_window=50))
    report = await deliver(plan, url="http://127.0.0.1:8080/webhooks/stripe",
                           secret=Secret("whsec_..."))

Modules: stripe_factory (payload builders, both API families), scenario (the stories),
expected (the ledger arithmetic, independent of streams/), plan (duplicates, reordering),
deliver (signed HTTP with retries and bounds), cli (`refstream simulate`).
"""
