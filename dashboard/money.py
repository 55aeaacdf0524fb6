"""Money as people read it: integer minor units shown in the currency's major unit, never
converted, never summed across currencies."""

from __future__ import annotations

# ISO 4217 minor-unit exponents that differ from 2 (Stripe's zero- and three-decimal lists).
_EXPONENT = {
    **dict.fromkeys("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(), 0),
    **dict.fromkeys("bhd jod kwd omr tnd".split(), 3),
}


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.lower(), 2)


def format_minor(amount_minor: int, currency: str) -> str:
    """12345, "usd" -> "123.45 USD"; -5, "usd" -> "-0.05 USD"; 500, "jpy" -> "500 JPY"."""
    digits = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(int(amount_minor)), 10**digits)
    text = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    return f"{sign}{text} {currency.upper()}"


def major(amount_minor: int, currency: str) -> float:
    """For chart axes only (a chart is a picture; tables carry the exact numbers)."""
    return int(amount_minor) / 10 ** exponent(currency)
