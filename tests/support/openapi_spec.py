"""Stripe's own OpenAPI description (spec3.json) as a validator of the payloads we build.

The spec is the one embedded in the stripe-mock Go module that scripts/test installs
(`$(go env GOMODCACHE)/github.com/stripe/stripe-mock@v0.203.0/embedded/openapi/`). Its
`info.version` is 2026-08-26.dahlia, a basil-family version: basil+ payloads are checked
against it as they are. Fields Stripe removed in 2025-03-31.basil are gone from it, so a
payload rendered at an older API version is checked against the spec with a small,
explicit overlay (`PRE_BASIL_FIELDS`, `OLD_VERSION_FIELDS`: what existed then, with its
type) and a deny-list (`BASIL_ONLY_FIELDS`: what must not appear before basil).

A dependency-free validator of the subset of OpenAPI 3 Stripe uses: `$ref`, `anyOf`
(expandable fields are `anyOf: [string, object]`), `nullable`, `enum`, `type` (a bool is
not an integer), `required`, `properties` (a property the schema doesn't define is an
error, unless `additionalProperties` says otherwise: metadata maps are
`additionalProperties: {type: string}`), arrays and list objects.

    spec = load_spec()
    errors = spec.event_errors(event)          # [] when the event is shaped like Stripe's
    errors = spec.errors(obj, "invoice", api_version="2024-06-20")
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

STRIPE_MOCK_MODULE = "github.com/stripe/stripe-mock@v0.203.0"
SPEC_RELATIVE = "embedded/openapi/spec3.json"
SPEC_VERSION = "2026-08-26.dahlia"
BASIL_DATE = "2025-03-31"
FALLBACK_GOMODCACHE = Path("/root/go/pkg/mod")
MISSING_MESSAGE = (
    "Stripe's OpenAPI spec is missing at {path}: run scripts/test (it installs "
    f"{STRIPE_MOCK_MODULE}), or `go mod download {STRIPE_MOCK_MODULE}`; "
    "REFSTREAM_STRIPE_SPEC may point at a spec3.json"
)


class SpecMissingError(AssertionError):
    """The spec file is absent: a failure, never a skip (CI must run the shape tests)."""


def _string(nullable: bool = False) -> Schema:
    return {"type": "string", "nullable": nullable}


def _integer(nullable: bool = False) -> Schema:
    return {"type": "integer", "nullable": nullable}


def _expandable(component: str) -> Schema:
    """A nullable id-or-object field (the spec's expandable fields)."""
    return {
        "anyOf": [_string(), {"$ref": f"#/components/schemas/{component}"}],
        "nullable": True,
    }


_BOOLEAN: Schema = {"type": "boolean"}
_METADATA: Schema = {"type": "object", "additionalProperties": {"type": "string"}}

# --- fields that exist only before 2025-03-31.basil (so they are absent from the spec) ---
# Each: the component schema -> {property: its schema then}. Source: the basil changelog
# (docs.stripe.com/changelog/basil/2025-03-31/*) and /work/shared/STRIPE.md.
PRE_BASIL_FIELDS: dict[str, dict[str, Schema]] = {
    "invoice": {
        # "adds-new-parent-field-to-invoicing-objects": subscription and its metadata
        # snapshot moved to parent.subscription_details.
        "subscription": _expandable("subscription"),
        "subscription_details": {
            "type": "object",
            "nullable": True,
            "properties": {"metadata": {**_METADATA, "nullable": True}},
        },
        # "add-support-for-multiple-partial-payments-on-invoices": charge, payment_intent,
        # paid and paid_out_of_band gave way to invoice.payments / amount_paid_off_stripe.
        "charge": _expandable("charge"),
        "payment_intent": _expandable("payment_intent"),
        "paid": _BOOLEAN,
        "paid_out_of_band": _BOOLEAN,
        # "removes-tax-fields...": tax gave way to total_taxes.
        "tax": _integer(nullable=True),
    },
    "line_item": {
        # "adds-new-parent-field-to-invoicing-objects": type, subscription_item,
        # invoice_item, proration (and proration_details) moved under parent.*; price/plan
        # gave way to pricing.price_details.
        "type": {"type": "string", "enum": ["invoiceitem", "subscription"]},
        "subscription_item": _string(nullable=True),
        "invoice_item": _string(nullable=True),
        "proration": _BOOLEAN,
        "price": {"$ref": "#/components/schemas/price", "nullable": True},
    },
    "charge": {
        # Charges and payment intents no longer name their invoice from basil on.
        "invoice": _expandable("invoice"),
    },
    "subscription": {
        # "deprecate-subscription-current-period-start-and-end": moved to the items.
        "current_period_start": _integer(),
        "current_period_end": _integer(),
    },
    "credit_note": {
        # "add-support-for-multiple-partial-payments-on-invoices": the single `refund`
        # became the `refunds` list ({amount_refunded, refund}).
        "refund": _expandable("refund"),
    },
}

# Fields the spec has that a pre-basil payload must not carry (added by basil as
# replacements of the fields above). A pre-basil payload that has them is an error.
BASIL_ONLY_FIELDS: dict[str, frozenset[str]] = {
    # parent (subscription_details), total_taxes (tax), amount_paid_off_stripe
    # (paid_out_of_band), payments is includable but basil-only too.
    "invoice": frozenset({"parent", "total_taxes", "amount_paid_off_stripe", "payments"}),
    # parent (type/subscription_item/invoice_item/proration), pricing (price).
    "line_item": frozenset({"parent", "pricing"}),
    # current_period_* moved from the subscription onto its items in basil.
    "subscription_item": frozenset({"current_period_start", "current_period_end"}),
    # refunds (the list) replaced refund (one id).
    "credit_note": frozenset({"refunds"}),
}

# Spec-required fields that a pre-basil payload does not have (they are the basil
# replacements above): not required before basil.
BASIL_REQUIRED: dict[str, frozenset[str]] = {
    "invoice": frozenset({"amount_paid_off_stripe"}),
    "subscription_item": frozenset({"current_period_start", "current_period_end"}),
    "credit_note": frozenset({"refunds"}),
}


@dataclass(frozen=True)
class OldVersionRule:
    """A field's shape before API version `until` (exclusive, YYYY-MM-DD)."""

    schema: str
    until: str
    allowed: Mapping[str, Schema] = field(default_factory=dict)  # extra fields then
    absent: frozenset[str] = frozenset()  # spec fields that must be absent then
    reason: str = ""


OLD_VERSION_FIELDS: tuple[OldVersionRule, ...] = (
    OldVersionRule(
        "invoice",
        "2019-03-14",
        allowed={"date": _integer()},
        absent=frozenset({"created"}),
        reason="2019-03-14: invoice `date` renamed to `created`",
    ),
    OldVersionRule(
        "invoice",
        "2018-02-28",
        absent=frozenset({"amount_paid"}),
        reason="2018-02-28: invoice `amount_paid` added (before: `paid` with `amount_due`)",
    ),
    OldVersionRule(
        "subscription",
        "2020-08-27",
        allowed={"plan": {"$ref": "#/components/schemas/plan", "nullable": True}},
        reason="2020-08-27: the single-plan `plan` (and `quantity`) removed; use `items`",
    ),
)

# The component schema of each `object` value we send (the ones whose name differs).
OBJECT_SCHEMAS: dict[str, str] = {}


def _go_modcache() -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    try:
        out = subprocess.run(
            [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return Path(out) if out else FALLBACK_GOMODCACHE


def spec_path() -> Path:
    override = os.environ.get("REFSTREAM_STRIPE_SPEC")
    if override:
        return Path(override)
    for base in (_go_modcache(), FALLBACK_GOMODCACHE):
        candidate = base / STRIPE_MOCK_MODULE / SPEC_RELATIVE
        if candidate.is_file():
            return candidate
    return _go_modcache() / STRIPE_MOCK_MODULE / SPEC_RELATIVE


@functools.cache
def load_spec() -> StripeSpec:
    path = spec_path()
    if not path.is_file():
        raise SpecMissingError(MISSING_MESSAGE.format(path=path))
    return StripeSpec(json.loads(path.read_text()))


def _before(api_version: str | None, date: str) -> bool:
    return api_version is not None and api_version[:10] < date


class StripeSpec:
    def __init__(self, document: Schema) -> None:
        self.document = document
        self.version: str = document["info"]["version"]
        self.schemas: dict[str, Schema] = document["components"]["schemas"]

    # --- entry points --------------------------------------------------------------------

    def schema_for_object(self, object_name: str) -> str:
        name = OBJECT_SCHEMAS.get(object_name, object_name)
        if name not in self.schemas:
            raise KeyError(f"no schema in the spec for object {object_name!r}")
        return name

    def errors(self, value: Any, schema: str, *, api_version: str | None = None) -> list[str]:
        """Where `value` differs from component `schema` as rendered at `api_version`."""
        out: list[str] = []
        self._check(value, {"$ref": f"#/components/schemas/{schema}"}, schema, api_version, out)
        return out

    def event_errors(self, event: Mapping[str, Any]) -> list[str]:
        """The envelope against `event`, data.object against its object's schema, and
        data.previous_attributes: each key a property of that object, of the right type."""
        api_version = event.get("api_version")
        out = [f"event: {e}" for e in self.errors(event, "event", api_version=api_version)]
        data = event.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
            return [*out, "event.data.object: missing"]
        obj = data["object"]
        try:
            name = self.schema_for_object(str(obj.get("object")))
        except KeyError as exc:
            return [*out, f"event.data.object: {exc}"]
        out += self.errors(obj, name, api_version=api_version)
        previous = data.get("previous_attributes")
        if isinstance(previous, Mapping):
            props = self._properties(name, api_version)
            for key, value in previous.items():
                path = f"{name}.previous_attributes.{key}"
                if key not in props:
                    out.append(f"{path}: not a property of {name}")
                else:
                    self._check(value, {**props[key], "nullable": True}, path, api_version, out)
        return out

    # --- the walk ------------------------------------------------------------------------

    def _resolve(self, ref: str) -> tuple[str, Schema]:
        name = ref.rsplit("/", 1)[-1]
        return name, self.schemas[name]

    def _properties(self, name: str, api_version: str | None) -> dict[str, Schema]:
        props = dict(self.schemas[name].get("properties", {}))
        if _before(api_version, BASIL_DATE):
            props.update(PRE_BASIL_FIELDS.get(name, {}))
            for key in BASIL_ONLY_FIELDS.get(name, ()):
                props.pop(key, None)
        for rule in OLD_VERSION_FIELDS:
            if rule.schema == name and _before(api_version, rule.until):
                props.update(rule.allowed)
                for key in rule.absent:
                    props.pop(key, None)
        return props

    def _required(self, name: str, api_version: str | None) -> set[str]:
        required = set(self.schemas[name].get("required", []))
        if _before(api_version, BASIL_DATE):
            required -= BASIL_REQUIRED.get(name, frozenset())
        for rule in OLD_VERSION_FIELDS:
            if rule.schema == name and _before(api_version, rule.until):
                required -= rule.absent
        return required

    def _check(
        self, value: Any, schema: Schema, path: str, api_version: str | None, out: list[str]
    ) -> None:
        nullable = bool(schema.get("nullable"))
        if "$ref" in schema:
            name, target = self._resolve(schema["$ref"])
            if value is None:
                if not nullable and not target.get("nullable"):
                    out.append(f"{path}: null, expected {name}")
                return
            self._check_component(value, name, path, api_version, out)
            return
        if value is None:
            if not nullable:
                out.append(f"{path}: null is not allowed")
            return
        if "anyOf" in schema:
            best: list[str] | None = None
            # Report against the alternatives of the value's own kind (an expanded object
            # against the object schema, not "is not a string").
            options = [o for o in schema["anyOf"] if self._same_kind(value, o)]
            for option in options or schema["anyOf"]:
                attempt: list[str] = []
                self._check(value, option, path, api_version, attempt)
                if not attempt:
                    return
                if best is None or len(attempt) < len(best):
                    best = attempt
            out.extend(best or [f"{path}: matches no alternative"])
            return
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{path}: {value!r} is not one of {schema['enum']}")
            return
        kind = schema.get("type")
        if kind == "string":
            if not isinstance(value, str):
                out.append(f"{path}: {value!r} is not a string")
        elif kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                out.append(f"{path}: {value!r} is not an integer")
        elif kind == "number":
            if not isinstance(value, int | float) or isinstance(value, bool):
                out.append(f"{path}: {value!r} is not a number")
        elif kind == "boolean":
            if not isinstance(value, bool):
                out.append(f"{path}: {value!r} is not a boolean")
        elif kind == "array":
            if not isinstance(value, list):
                out.append(f"{path}: {type(value).__name__} is not an array")
                return
            for i, item in enumerate(value):
                self._check(item, schema.get("items", {}), f"{path}[{i}]", api_version, out)
        elif kind == "object" or "properties" in schema:
            self._check_object(
                value,
                schema.get("properties"),
                set(schema.get("required", [])),
                schema.get("additionalProperties"),
                path,
                api_version,
                out,
            )

    def _same_kind(self, value: Any, schema: Schema) -> bool:
        if "$ref" in schema:
            schema = self._resolve(schema["$ref"])[1]
        kind = schema.get("type", "object" if "properties" in schema else None)
        if isinstance(value, Mapping):
            return kind == "object"
        if isinstance(value, list):
            return kind == "array"
        if isinstance(value, bool):
            return kind == "boolean"
        if isinstance(value, int | float):
            return kind in ("integer", "number")
        return kind == "string" if isinstance(value, str) else True

    def _check_component(
        self, value: Any, name: str, path: str, api_version: str | None, out: list[str]
    ) -> None:
        schema = self.schemas[name]
        if "properties" not in schema:
            self._check(value, {**schema, "nullable": False}, path, api_version, out)
            return
        self._check_object(
            value,
            self._properties(name, api_version),
            self._required(name, api_version),
            schema.get("additionalProperties"),
            path,
            api_version,
            out,
        )

    def _check_object(
        self,
        value: Any,
        properties: Mapping[str, Schema] | None,
        required: set[str],
        additional: Any,
        path: str,
        api_version: str | None,
        out: list[str],
    ) -> None:
        if not isinstance(value, Mapping):
            out.append(f"{path}: {type(value).__name__} is not an object")
            return
        for key in sorted(required - value.keys()):
            out.append(f"{path}.{key}: required, missing")
        props = properties or {}
        for key, item in value.items():
            if key in props:
                self._check(item, props[key], f"{path}.{key}", api_version, out)
            elif isinstance(additional, dict):
                if additional:
                    self._check(item, additional, f"{path}.{key}", api_version, out)
            elif additional is True or (properties is None and additional is None):
                continue  # a free-form object (e.g. event.data.object)
            else:
                out.append(f"{path}.{key}: not in the spec")
