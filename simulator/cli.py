"""`refstream simulate` (options declared in refstream/cli.py): generate, write, post.

Steps, in order (each bad option is exit 2 with the reason, before anything is sent):
1. build the scenario and the delivery plan from the options (seeded: same options, same
   stream);
2. write the expected ledger (--expect-file) and the program file (--program-file), so a
   test or a person can compare the report with them while the stream is still flowing;
3. apply the program to Kafka when --apply-program is given;
4. post the plan to the ingress, a progress line on stderr every second;
5. print the delivery report as one JSON line on stdout; exit 0 when every delivery was
   acknowledged, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from refstream.settings import Secret, Settings
from simulator.deliver import DeliveryLimits, Progress, UnsafeTargetError, check_target, deliver
from simulator.plan import DeliveryOptions, PlanError, delivery_plan
from simulator.scenario import ScenarioConfig, ScenarioError, generate

WEBHOOK_PATH = "/webhooks/stripe"
MAX_DELIVERIES = 2_000_000
_TOTALS = ("customers", "payments", "events", "charges")


class UsageError(ValueError):
    """An option the command cannot run with (exit 2)."""


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config, options, limits = _options(settings, args)
        url = check_target(args.url or default_url(settings), allow_remote=args.allow_remote)
        secret = None if args.dry_run else signing_secret(settings, args.secret_from_env)
        scenario = generate(config)
        plan = delivery_plan(scenario.events, options)
        if len(plan) > MAX_DELIVERIES:
            raise UsageError(f"{len(plan)} deliveries exceed the bound of {MAX_DELIVERIES}")
    except (UsageError, ScenarioError, PlanError, UnsafeTargetError, ValueError) as exc:
        print(f"refstream simulate: {exc}", file=sys.stderr)
        return 2
    counts = scenario.expected.counts
    print(
        f"simulate: {counts['customers']} customers, {counts['payments']} payments, "
        f"{counts['events']} events, {len(plan)} deliveries -> {url}",
        file=sys.stderr,
        flush=True,
    )
    flows = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in _TOTALS and v)
    print(f"simulate: flows: {flows}", file=sys.stderr, flush=True)
    if args.expect_file is not None:
        _write(args.expect_file, json.dumps(scenario.expected_document(), indent=1) + "\n")
    if args.program_file is not None:
        _write(args.program_file, scenario.program.toml())
    if args.apply_program:
        asyncio.run(_apply_program(settings, scenario.program.toml(), scenario.program.program_id))
    if secret is None:
        return 0
    report = asyncio.run(
        deliver(
            plan,
            url=url,
            secret=secret,
            limits=limits,
            on_progress=_print_progress,
            allow_remote=args.allow_remote,
            seed=config.seed,
        )
    )
    print(json.dumps(report.to_json()), flush=True)
    return 0 if report.ok else 1


def _options(
    settings: Settings, args: argparse.Namespace
) -> tuple[ScenarioConfig, DeliveryOptions, DeliveryLimits]:
    config = ScenarioConfig(
        customers=args.customers,
        months=args.months,
        seed=args.seed,
        referrers=args.referrers,
        live_ratio=args.live_ratio,
        code_key=settings.streams.referral_code_key,
        new_user_id_key=settings.streams.new_user_id_key,
    )
    config.validate()
    options = DeliveryOptions(
        seed=args.seed,
        duplicates=args.duplicates,
        shuffle_window=args.shuffle_window,
        customer_shuffle=args.customer_shuffle,
    )
    options.validate()
    limits = DeliveryLimits(
        concurrency=args.concurrency, max_attempts=args.max_attempts, deadline_s=args.timeout_s
    )
    limits.validate()
    return config, options, limits


def default_url(settings: Settings) -> str:
    """The ingress of these settings, reached over loopback when it listens on all hosts."""
    host = settings.ingress.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a listen address, mapped to loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.ingress.port}{WEBHOOK_PATH}"


def signing_secret(settings: Settings, env_var: str | None) -> Secret:
    """The secret to sign with; messages name where it was looked for, never its value."""
    if env_var is not None:
        value = os.environ.get(env_var, "").strip()
        if not value:
            raise UsageError(f"--secret-from-env: ${env_var} is empty or unset")
        if not value.startswith("whsec_"):
            raise UsageError(f"--secret-from-env: ${env_var} does not hold a whsec_ secret")
        return Secret(value)
    if not settings.ingress.webhook_secrets:
        raise UsageError(
            "no signing secret: set REFSTREAM_WEBHOOK_SECRETS (as the ingress has it) "
            "or pass --secret-from-env VAR"
        )
    return settings.ingress.webhook_secrets[0]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # readers never see half a file
    print(f"simulate: wrote {path}", file=sys.stderr, flush=True)


async def _apply_program(settings: Settings, toml: str, program_id: str) -> None:
    # Imported here: only this option needs Kafka.
    from streams.ledger.programs import parse_programs_toml
    from streams.worker_programs import apply_programs, read_programs

    changed = await apply_programs(settings.kafka, parse_programs_toml(toml, "simulator"))
    versions = ", ".join(f"{pv.program.id} v{pv.version}" for pv in changed) or "unchanged"
    print(f"simulate: program applied: {versions}", file=sys.stderr, flush=True)
    others = sorted(
        pid
        for pid, pv in (await read_programs(settings.kafka)).items()
        if pid != program_id and pv.program.active
    )
    if others:
        print(
            f"simulate: warning: other active programs ({', '.join(others)}) will add rewards "
            f"the expected ledger does not count (it assumes {program_id} alone)",
            file=sys.stderr,
            flush=True,
        )


def _print_progress(progress: Progress) -> None:
    print(f"simulate: {progress.line()}", file=sys.stderr, flush=True)
