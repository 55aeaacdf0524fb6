"""The web dashboard for growth and finance teams, served by the sink process next to the
read-only report API (sinks/query_api.py mounts it under PREFIX).

Pages are rendered on the server (aiohttp + Jinja2); charts are Chart.js, vendored as a
static file. Numbers come from the named reports (sinks/reports.py) and a few read-only
queries of this package; writes go to Kafka exactly as the CLI does them (programs:
streams/worker_programs.apply_programs; payouts: the referral.payouts record of
`refstream payouts mark`). Live and test mode, and each Connect account, are one "ledger
mode" each, and a page shows one ledger mode only; currencies are never summed together.
"""

PREFIX = "/dashboard"
