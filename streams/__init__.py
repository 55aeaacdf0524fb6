"""The worker's code, laid out by what it may touch.

  ledger/        pure: the customer side's decisions (attribution, programs, rewards,
                 state, compaction, Stripe payload parsing, payment links)
  corrections/   pure: refunds, disputes, holds, payouts, balances, lifecycle records
  worker/        the Kafka runtime: consumer loop, agents, tables, outputs; the adapters
                 between table bytes and the pure states (worker/cores.py)
  errors         which exceptions are bad input (dead-lettered) and which are bugs (stop)
  worker_programs  the programs topic, followed by the worker and written by the CLI
  programs_cli, payouts_cli  `refstream programs ...`, `refstream payouts ...`

The pure packages import nothing of Kafka, the settings or the clock
(tests/unit/test_layout.py keeps it so).
"""
