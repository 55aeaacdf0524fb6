"""The revenue ledger's decisions, pure: no ClickHouse, Kafka or settings here.

`state` holds what the sink keeps per money key, charge / payment intent, customer and
attribution; `stripe` and `attribution` turn one window of rows plus the states it touches
into new states and contribution deltas (sinks/revenue_ledger.py does the I/O).
"""
