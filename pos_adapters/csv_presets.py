"""Ready-made readings of common POS CSV exports, chosen with ``preset = "NAME"`` on a file source.

A preset replaces ``[sources.columns]``: it knows which headers hold what (with the alternative
names different export versions use), which are required, and how a row becomes a POS line.

Presets:
- ``square-items``: Square's "Items" sales export (Items detail CSV).
- ``shopify-orders``: Shopify's orders export (one row per line item; order fields on the first row).

Invariants:
- Headers are matched case-insensitively after trimming; the first candidate name found wins.
  A missing required header makes the whole file malformed, naming what was looked for.
- Neither layout has line numbers: lines are numbered 1, 2, ... in file order within each
  transaction, counting every row of it (also rows that move nothing), so the same item twice in
  one transaction is two lines and both count, and a re-read file gets the same numbers.
- Money is read with its currency symbol, thousands separators and sign (``-$1,234.00``,
  ``($5.00)``); with ``decimal_comma`` the roles of ``.`` and ``,`` swap.
- A row that moves no stock (a cancelled order, a gift card or custom amount) yields None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pos_adapters.lines import MAX_EXPONENT, LineError, PosLine

Get = Callable[[str], str]


@dataclass
class PresetState:
    """What a preset remembers from earlier rows of the same file."""

    lines: dict[str, int] = field(default_factory=dict)
    order: str | None = None
    carried: dict[str, str] = field(default_factory=dict)

    def next_line(self, transaction: str) -> int:
        """Return the next line number of ``transaction`` (1 for its first row in the file)."""
        number = self.lines.get(transaction, 0) + 1
        self.lines[transaction] = number
        return number


@dataclass(frozen=True, slots=True)
class PresetOptions:
    """Source settings a preset needs."""

    timezone: tzinfo
    decimal_comma: bool = False


MakeLine = Callable[[Get, PresetState, PresetOptions], PosLine | None]


@dataclass(frozen=True, slots=True)
class Preset:
    """One export layout: header names per field, required fields, and the row reading."""

    name: str
    title: str
    headers: Mapping[str, tuple[str, ...]]
    required: tuple[tuple[str, ...], ...]
    make_line: MakeLine

    def resolve(self, header: list[str]) -> tuple[dict[str, int], list[str]]:
        """Return field -> column index for this header, and the descriptions of missing required fields."""
        positions: dict[str, int] = {}
        for i, name in enumerate(header):
            positions.setdefault(name.strip().lower(), i)
        index: dict[str, int] = {}
        for target, names in self.headers.items():
            for name in names:
                if name.lower() in positions:
                    index[target] = positions[name.lower()]
                    break
        missing = []
        for group in self.required:
            if not any(f in index for f in group):
                wanted = " or ".join(f"'{n}'" for f in group for n in self.headers[f])
                missing.append(wanted)
        return index, missing


# -- numbers and money ---------------------------------------------------------------------------

_THOUSANDS_DOT = re.compile(r"[-+]?\d{1,3}(\.\d{3})+")


def parse_number(text: str, what: str, *, decimal_comma: bool = False, money: bool = False) -> Decimal:
    """Parse a quantity or amount as a POS export writes it.

    With ``money``, currency symbols and codes, thousands separators and accounting parentheses
    are understood. With ``decimal_comma``, ``,`` is the decimal mark and ``.`` groups thousands
    (``1.500`` is fifteen hundred); without it, a comma in a quantity is an error rather than a guess.
    """
    raw = text.strip()
    if not raw:
        raise LineError("BAD_NUMBER", f"{what} is empty")
    value = raw.replace("\u2212", "-").replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    negative = False
    if money:
        if value.startswith("(") and value.endswith(")"):
            negative, value = True, value[1:-1]
        value = re.sub(r"[^\d.,+-]", "", value)
    if value.startswith("-"):
        negative, value = not negative, value[1:]
    elif value.endswith("-"):  # some exports write the sign last: 12.50-
        negative, value = not negative, value[:-1]
    value = value.removeprefix("+")
    if decimal_comma:
        if "," in value or _THOUSANDS_DOT.fullmatch(value):
            value = value.replace(".", "").replace(",", ".")
    elif money:
        value = value.replace(",", "")
    try:
        number = Decimal(value)
    except InvalidOperation:
        hint = "" if decimal_comma or "," not in raw else " (set decimal_comma = true if the export writes 1,5)"
        raise LineError("BAD_NUMBER", f"{what} {raw[:40]!r} is not a number{hint}") from None
    if not number.is_finite():
        raise LineError("BAD_NUMBER", f"{what} {raw[:40]!r} is not a finite number")
    if number != 0 and not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:  # would overflow arithmetic
        raise LineError("BAD_NUMBER", f"{what} {raw[:40]!r} is out of any plausible range")
    return -number if negative else number


def unit_price(total: str, quantity: Decimal, options: PresetOptions) -> Decimal | None:
    """Return a line's price per unit from its total, or None when the total is empty or the quantity 0."""
    if not total.strip() or quantity == 0:
        return None
    amount = parse_number(total, "amount", decimal_comma=options.decimal_comma, money=True)
    return (abs(amount) / abs(quantity)).quantize(Decimal("0.0001")).normalize()


# -- time zones written as names -----------------------------------------------------------------

# Square (like Rails' ActiveSupport) writes time zones as display names; these are the IANA zones.
ZONE_NAMES = {
    "International Date Line West": "Etc/GMT+12",
    "American Samoa": "Pacific/Pago_Pago",
    "Midway Island": "Pacific/Midway",
    "Hawaii": "Pacific/Honolulu",
    "Alaska": "America/Juneau",
    "Pacific Time (US & Canada)": "America/Los_Angeles",
    "Tijuana": "America/Tijuana",
    "Mountain Time (US & Canada)": "America/Denver",
    "Arizona": "America/Phoenix",
    "Chihuahua": "America/Chihuahua",
    "Mazatlan": "America/Mazatlan",
    "Central Time (US & Canada)": "America/Chicago",
    "Saskatchewan": "America/Regina",
    "Guadalajara": "America/Mexico_City",
    "Mexico City": "America/Mexico_City",
    "Monterrey": "America/Monterrey",
    "Central America": "America/Guatemala",
    "Eastern Time (US & Canada)": "America/New_York",
    "Indiana (East)": "America/Indiana/Indianapolis",
    "Bogota": "America/Bogota",
    "Lima": "America/Lima",
    "Quito": "America/Lima",
    "Atlantic Time (Canada)": "America/Halifax",
    "Caracas": "America/Caracas",
    "La Paz": "America/La_Paz",
    "Santiago": "America/Santiago",
    "Newfoundland": "America/St_Johns",
    "Brasilia": "America/Sao_Paulo",
    "Buenos Aires": "America/Argentina/Buenos_Aires",
    "Montevideo": "America/Montevideo",
    "Georgetown": "America/Guyana",
    "Puerto Rico": "America/Puerto_Rico",
    "Greenland": "America/Nuuk",
    "Mid-Atlantic": "Atlantic/South_Georgia",
    "Azores": "Atlantic/Azores",
    "Cape Verde Is.": "Atlantic/Cape_Verde",
    "Dublin": "Europe/Dublin",
    "Edinburgh": "Europe/London",
    "Lisbon": "Europe/Lisbon",
    "London": "Europe/London",
    "Casablanca": "Africa/Casablanca",
    "Monrovia": "Africa/Monrovia",
    "UTC": "Etc/UTC",
    "Belgrade": "Europe/Belgrade",
    "Bratislava": "Europe/Bratislava",
    "Budapest": "Europe/Budapest",
    "Ljubljana": "Europe/Ljubljana",
    "Prague": "Europe/Prague",
    "Sarajevo": "Europe/Sarajevo",
    "Skopje": "Europe/Skopje",
    "Warsaw": "Europe/Warsaw",
    "Zagreb": "Europe/Zagreb",
    "Brussels": "Europe/Brussels",
    "Copenhagen": "Europe/Copenhagen",
    "Madrid": "Europe/Madrid",
    "Paris": "Europe/Paris",
    "Amsterdam": "Europe/Amsterdam",
    "Berlin": "Europe/Berlin",
    "Bern": "Europe/Zurich",
    "Zurich": "Europe/Zurich",
    "Rome": "Europe/Rome",
    "Stockholm": "Europe/Stockholm",
    "Vienna": "Europe/Vienna",
    "West Central Africa": "Africa/Algiers",
    "Bucharest": "Europe/Bucharest",
    "Cairo": "Africa/Cairo",
    "Helsinki": "Europe/Helsinki",
    "Kyiv": "Europe/Kyiv",
    "Riga": "Europe/Riga",
    "Sofia": "Europe/Sofia",
    "Tallinn": "Europe/Tallinn",
    "Vilnius": "Europe/Vilnius",
    "Athens": "Europe/Athens",
    "Istanbul": "Europe/Istanbul",
    "Minsk": "Europe/Minsk",
    "Jerusalem": "Asia/Jerusalem",
    "Harare": "Africa/Harare",
    "Pretoria": "Africa/Johannesburg",
    "Kaliningrad": "Europe/Kaliningrad",
    "Moscow": "Europe/Moscow",
    "St. Petersburg": "Europe/Moscow",
    "Volgograd": "Europe/Volgograd",
    "Samara": "Europe/Samara",
    "Kuwait": "Asia/Kuwait",
    "Riyadh": "Asia/Riyadh",
    "Nairobi": "Africa/Nairobi",
    "Baghdad": "Asia/Baghdad",
    "Tehran": "Asia/Tehran",
    "Abu Dhabi": "Asia/Dubai",
    "Muscat": "Asia/Muscat",
    "Baku": "Asia/Baku",
    "Tbilisi": "Asia/Tbilisi",
    "Yerevan": "Asia/Yerevan",
    "Kabul": "Asia/Kabul",
    "Ekaterinburg": "Asia/Yekaterinburg",
    "Islamabad": "Asia/Karachi",
    "Karachi": "Asia/Karachi",
    "Tashkent": "Asia/Tashkent",
    "Chennai": "Asia/Kolkata",
    "Kolkata": "Asia/Kolkata",
    "Mumbai": "Asia/Kolkata",
    "New Delhi": "Asia/Kolkata",
    "Kathmandu": "Asia/Kathmandu",
    "Dhaka": "Asia/Dhaka",
    "Sri Jayawardenepura": "Asia/Colombo",
    "Almaty": "Asia/Almaty",
    "Novosibirsk": "Asia/Novosibirsk",
    "Rangoon": "Asia/Yangon",
    "Bangkok": "Asia/Bangkok",
    "Hanoi": "Asia/Bangkok",
    "Jakarta": "Asia/Jakarta",
    "Krasnoyarsk": "Asia/Krasnoyarsk",
    "Beijing": "Asia/Shanghai",
    "Chongqing": "Asia/Chongqing",
    "Hong Kong": "Asia/Hong_Kong",
    "Urumqi": "Asia/Urumqi",
    "Kuala Lumpur": "Asia/Kuala_Lumpur",
    "Singapore": "Asia/Singapore",
    "Taipei": "Asia/Taipei",
    "Perth": "Australia/Perth",
    "Irkutsk": "Asia/Irkutsk",
    "Ulaanbaatar": "Asia/Ulaanbaatar",
    "Seoul": "Asia/Seoul",
    "Osaka": "Asia/Tokyo",
    "Sapporo": "Asia/Tokyo",
    "Tokyo": "Asia/Tokyo",
    "Yakutsk": "Asia/Yakutsk",
    "Darwin": "Australia/Darwin",
    "Adelaide": "Australia/Adelaide",
    "Canberra": "Australia/Sydney",
    "Melbourne": "Australia/Melbourne",
    "Sydney": "Australia/Sydney",
    "Brisbane": "Australia/Brisbane",
    "Hobart": "Australia/Hobart",
    "Vladivostok": "Asia/Vladivostok",
    "Guam": "Pacific/Guam",
    "Port Moresby": "Pacific/Port_Moresby",
    "Magadan": "Asia/Magadan",
    "Solomon Is.": "Pacific/Guadalcanal",
    "New Caledonia": "Pacific/Noumea",
    "Fiji": "Pacific/Fiji",
    "Kamchatka": "Asia/Kamchatka",
    "Marshall Is.": "Pacific/Majuro",
    "Auckland": "Pacific/Auckland",
    "Wellington": "Pacific/Auckland",
    "Nuku'alofa": "Pacific/Tongatapu",
    "Chatham Is.": "Pacific/Chatham",
    "Samoa": "Pacific/Apia",
}
_ZONE_KEYS = {name.lower(): zone for name, zone in ZONE_NAMES.items()}
_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?")
_GMT_PREFIX = re.compile(r"^\((?:UTC|GMT)[^)]*\)\s*")


def zone_from_name(name: str, default: tzinfo) -> tzinfo:
    """Return the time zone a POS wrote as a display name, an IANA name or an offset; else ``default``.

    Accepted: ``Central Time (US & Canada)``, ``(GMT-06:00) Central Time (US & Canada)``,
    ``America/Chicago``, ``UTC``, ``UTC-06:00``, ``-0600``. An unknown name is read as the store's
    own time zone (the POS and the store share a clock), so an odd name never stops a capture.
    """
    text = _GMT_PREFIX.sub("", name.strip())
    if not text:
        return default
    zone = _ZONE_KEYS.get(text.lower())
    if zone is not None:
        return ZoneInfo(zone)
    if text.upper() in ("UTC", "GMT", "Z"):
        return UTC
    match = _OFFSET.fullmatch(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    if "/" in text:
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            return default
    return default


def _date(text: str) -> date:
    value = text.strip()
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise LineError("BAD_DATE", f"date {value[:40]!r} is not a date (YYYY-MM-DD or MM/DD/YYYY)")


def _time(text: str) -> time:
    value = text.strip().upper()
    for fmt in ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p", "%I:%M:%S%p", "%I:%M%p"):
        try:
            return datetime.strptime(value, fmt).time()
        except ValueError:
            continue
    raise LineError("BAD_DATE", f"time {text.strip()[:40]!r} is not a time of day (HH:MM:SS)")


# -- square-items --------------------------------------------------------------------------------

_SQUARE_NON_STOCK = {"custom amount", "gift card", "service"}


def _square_line(get: Get, state: PresetState, options: PresetOptions) -> PosLine | None:
    txn = get("transaction_id") or get("payment_id")
    line_no = state.next_line(txn)
    if get("itemization_type").strip().lower() in _SQUARE_NON_STOCK:
        return None
    day = _date(get("date"))
    moment = datetime.combine(day, _time(get("time")), tzinfo=zone_from_name(get("time_zone"), options.timezone))
    quantity = parse_number(get("quantity"), "quantity", decimal_comma=options.decimal_comma)
    kind = "sale"
    if get("event_type").strip().lower() == "refund":
        kind, quantity = "return", abs(quantity)
    unit = get("unit").strip()
    return PosLine(
        pos_transaction_id=txn,
        line_no=line_no,
        occurred_at=moment,
        kind=kind,
        item=get("sku") or get("gtin") or get("item"),
        quantity=quantity,
        unit=unit.upper() if unit else None,
        terminal_id=get("device_name") or None,
        business_day=day,
        unit_price=unit_price(get("gross_sales"), quantity, options),
    )


SQUARE_ITEMS = Preset(
    name="square-items",
    title="Square Items export",
    headers={
        "date": ("Date",),
        "time": ("Time",),
        "time_zone": ("Time Zone", "Timezone"),
        "transaction_id": ("Transaction ID",),
        "payment_id": ("Payment ID",),
        "quantity": ("Qty", "Quantity"),
        "sku": ("SKU",),
        "gtin": ("GTIN", "UPC"),
        "item": ("Item", "Item Name"),
        "event_type": ("Event Type",),
        "device_name": ("Device Name", "Device"),
        "gross_sales": ("Gross Sales",),
        "unit": ("Unit",),
        "itemization_type": ("Itemization Type",),
    },
    required=(("date",), ("time",), ("transaction_id", "payment_id"), ("quantity",), ("sku", "gtin", "item")),
    make_line=_square_line,
)


# -- shopify-orders ------------------------------------------------------------------------------

_ORDER_FIELDS = ("created_at", "cancelled_at", "currency", "device_id")


def _shopify_time(text: str, options: PresetOptions) -> datetime:
    value = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LineError("BAD_DATE", f"'Created at' {value[:40]!r} is not a date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=options.timezone)


def _shopify_line(get: Get, state: PresetState, options: PresetOptions) -> PosLine | None:
    order = get("name")
    line_no = state.next_line(order)
    if order != state.order:
        state.order, state.carried = order, {}
    for key in _ORDER_FIELDS:  # Shopify writes order fields on the order's first row only
        if get(key):
            state.carried[key] = get(key)
    created = state.carried.get("created_at", "")
    if not created:
        raise LineError(
            "BAD_DATE",
            f"order {order} has no 'Created at': Shopify writes it on the order's first row, and that row is "
            "not directly above this one in the file",
        )
    if state.carried.get("cancelled_at"):
        return None
    quantity = parse_number(get("quantity"), "quantity", decimal_comma=options.decimal_comma)
    price = get("price")
    return PosLine(
        pos_transaction_id=order,
        line_no=line_no,
        occurred_at=_shopify_time(created, options),
        kind="sale",
        item=get("sku") or get("item"),
        quantity=quantity,
        terminal_id=state.carried.get("device_id") or None,
        unit_price=parse_number(price, "price", decimal_comma=options.decimal_comma, money=True) if price else None,
        currency=state.carried.get("currency") or None,
    )


SHOPIFY_ORDERS = Preset(
    name="shopify-orders",
    title="Shopify orders export",
    headers={
        "name": ("Name", "Order"),
        "created_at": ("Created at",),
        "cancelled_at": ("Cancelled at",),
        "currency": ("Currency",),
        "device_id": ("Device ID",),
        "quantity": ("Lineitem quantity",),
        "sku": ("Lineitem sku",),
        "item": ("Lineitem name",),
        "price": ("Lineitem price",),
    },
    required=(("name",), ("created_at",), ("quantity",), ("sku", "item")),
    make_line=_shopify_line,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (SQUARE_ITEMS, SHOPIFY_ORDERS)}
