"""Ask the Stripe API for a customer's referral metadata (stripe-python, async).

Used when revenue waited `REFSTREAM_LOOKUP_AFTER_S` without an attribution event: a customer
created before refstream listened never sends customer.created, but its metadata still
holds the code. Best effort: any API or network failure is logged and the revenue stays
parked (and becomes organic after the attribution window), never crashing the worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe

from refstream.settings import Secret
from streams.ledger.attribution import MetadataKeys, Touch

log = logging.getLogger(__name__)

SOURCE = "stripe_lookup"


@dataclass(frozen=True)
class LookupConfig:
    api_key: Secret
    api_base: str
    keys: MetadataKeys


class CustomerLookup:
    def __init__(self, config: LookupConfig) -> None:
        self.config = config
        self._http = stripe.AIOHTTPClient()
        self._client = stripe.StripeClient(
            config.api_key.value,
            base_addresses={"api": config.api_base},
            http_client=self._http,
            max_network_retries=2,
        )

    async def touch(self, customer_id: str, now_s: int, account: str | None = None) -> Touch | None:
        """The customer's referral touch, or None (no code, deleted, or the API failed).
        A Connect account's customer is read with the `Stripe-Account` header."""
        options: dict[str, str] = {} if account is None else {"stripe_account": account}
        try:
            customer = await self._client.v1.customers.retrieve_async(
                customer_id,
                options=options,  # type: ignore[arg-type]
            )
        except stripe.StripeError as exc:
            # The message of a StripeError never carries the key.
            log.warning(
                "stripe_lookup_failed",
                extra={"customer": customer_id, "error": type(exc).__name__, "detail": str(exc)},
            )
            return None
        data = customer.to_dict()
        metadata = data.get("metadata") or {}
        keys = self.config.keys
        code = str(metadata.get(keys.code, "")).strip()
        if data.get("deleted") or not code:
            return None
        return Touch(
            code=code,
            new_user_id=metadata.get(keys.new_user_id) or None,
            organization_id=metadata.get(keys.organization_id) or None,
            source=SOURCE,
            source_object_id=customer_id,
            event_id=f"lookup:{customer_id}",
            event_type="customer.lookup",
            at=now_s,
        )

    async def close(self) -> None:
        await self._http.close_async()
