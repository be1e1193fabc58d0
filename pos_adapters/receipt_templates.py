"""Receipt templates: regular expressions that read a printed receipt's text as one POS transaction.

Invariants:
- A template is checked completely when it is loaded (every pattern compiles and carries the named
  groups it must, formats are valid, keys are known); a bad template never meets a receipt.
- Patterns are Python regular expressions searched in each printed line on its own. Header fields
  take their first match. Every line matching ``item`` is an item line, numbered in print order with
  voided lines included, so voiding a line never renumbers the lines after it.
- Parsing never guesses: a receipt without a transaction id, a date and time or an item line, with a
  void that matches no item line, with a line matching ``refuse``, or (with ``check_total``) whose
  lines do not add up to its printed total, is refused with the reason in words.
- This module knows nothing of ports, files or movements; it imports nothing from the project.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

TRANSACTION_ID_FIELDS = ("transaction", "terminal", "date")


def _compiles(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


Pattern = Annotated[str, AfterValidator(_compiles)]


class TemplateSpec(BaseModel):
    """A receipt template as written in TOML (a built-in, a ``template_file`` or an inline table)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = ""
    description: str = ""
    transaction: Pattern
    transaction_id: str = "{transaction}"
    terminal: Pattern | None = None
    datetime: Pattern | None = None
    date: Pattern | None = None
    time: Pattern | None = None
    datetime_format: str | list[str] = "%Y-%m-%d %H:%M"
    item: Pattern
    void: Pattern | None = None
    return_: Pattern | None = Field(None, alias="return")
    total: Pattern | None = None
    check_total: bool = False
    skip: Pattern | None = None
    refuse: Pattern | None = None
    decimal_separator: Literal[".", ","] = "."

    @model_validator(mode="after")
    def _consistent(self) -> TemplateSpec:
        problems: list[str] = []
        item_groups = set(re.compile(self.item).groupindex)
        missing = [g for g in ("item", "quantity") if g not in item_groups]
        if missing:
            problems.append(f"item: the pattern needs the named group(s) {', '.join(f'(?P<{g}>...)' for g in missing)}")
        if self.datetime is None and self.date is None:
            problems.append("datetime: set 'datetime' (date and time on one line) or 'date' (and 'time')")
        if self.time is not None and self.date is None:
            problems.append("time: 'time' needs 'date'")
        if self.check_total and self.total is None:
            problems.append("check_total: needs a 'total' pattern")
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.transaction_id) if name is not None}
        except ValueError as exc:
            fields, problems = set(), [*problems, f"transaction_id: {exc}"]
        unknown = sorted(fields - set(TRANSACTION_ID_FIELDS))
        if unknown:
            problems.append(
                f"transaction_id: unknown field(s) {', '.join(unknown)} (available: {', '.join(TRANSACTION_ID_FIELDS)})"
            )
        for fmt in self.formats:
            try:
                dt.datetime(2026, 11, 20, 10, 4).strftime(fmt)
            except ValueError as exc:
                problems.append(f"datetime_format: {fmt!r}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def formats(self) -> list[str]:
        """The date/time formats to try, in order."""
        return [self.datetime_format] if isinstance(self.datetime_format, str) else list(self.datetime_format)


class TemplateError(ValueError):
    """A template that cannot be used, with every problem and where it is."""


class Unparsed(ValueError):
    """A receipt the template cannot read; the message says why in words."""


@dataclass(frozen=True, slots=True)
class ItemLine:
    """One item line of a receipt as the template read it."""

    line_no: int
    text: str
    item: str
    quantity: Decimal
    unit: str | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    voided: bool = False


@dataclass(frozen=True, slots=True)
class ParsedReceipt:
    """A receipt read as a transaction (``occurred_at`` is as printed: no time zone)."""

    transaction: str
    terminal: str | None
    occurred_at: dt.datetime
    is_return: bool
    items: tuple[ItemLine, ...]
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SkippedReceipt:
    """A print that is not a transaction (a report, a no-sale): kept in the archive, captured as nothing."""

    line: str


class ReceiptTemplate:
    """A compiled template: ``parse`` turns a receipt's lines into a transaction or says why not."""

    def __init__(self, spec: TemplateSpec, origin: str) -> None:
        """Compile ``spec``; ``origin`` names where it came from (for messages)."""
        self.spec = spec
        self.origin = origin
        self.name = spec.name or origin
        self._transaction = re.compile(spec.transaction)
        self._terminal = _maybe(spec.terminal)
        self._datetime = _maybe(spec.datetime)
        self._date = _maybe(spec.date)
        self._time = _maybe(spec.time)
        self._item = re.compile(spec.item)
        self._void = _maybe(spec.void)
        self._return = _maybe(spec.return_)
        self._total = _maybe(spec.total)
        self._skip = _maybe(spec.skip)
        self._refuse = _maybe(spec.refuse)

    def parse(self, lines: Sequence[str], *, terminal: str | None = None) -> ParsedReceipt | SkippedReceipt:
        """Read a receipt's printed lines; raise ``Unparsed`` with the reason if they do not fit.

        ``terminal`` is the terminal id to use when the template finds none on the receipt.
        """
        if self._refuse is not None:
            refused = _first_line(self._refuse, lines)
            if refused is not None:
                raise Unparsed(
                    f"the line {refused!r} matches the template's refuse pattern: this receipt needs a person"
                )
        if self._skip is not None:
            skipped = _first_line(self._skip, lines)
            if skipped is not None:
                return SkippedReceipt(skipped)
        transaction = _first_value(self._transaction, lines, "transaction")
        if transaction is None:
            raise Unparsed("no line matches the template's transaction pattern")
        terminal = (_first_value(self._terminal, lines, "terminal") if self._terminal else None) or terminal
        occurred_at = self._occurred_at(lines)
        is_return = self._return is not None and _first_line(self._return, lines) is not None
        items = self._items(lines)
        total = self._check_total(items, lines)
        txn_id = self.spec.transaction_id.format(
            transaction=transaction, terminal=terminal or "", date=occurred_at.date().isoformat()
        )
        return ParsedReceipt(txn_id, terminal, occurred_at, is_return, tuple(items), total)

    def transaction_of(self, lines: Sequence[str]) -> str | None:
        """Return the transaction number printed on a receipt, if the transaction pattern finds one."""
        return _first_value(self._transaction, lines, "transaction")

    def _occurred_at(self, lines: Sequence[str]) -> dt.datetime:
        if self._datetime is not None:
            text = _first_value(self._datetime, lines, "datetime")
            if text is None:
                raise Unparsed("no line matches the template's datetime pattern")
        else:
            assert self._date is not None
            match = _first_match(self._date, lines)
            if match is None:
                raise Unparsed("no line matches the template's date pattern")
            text = _value(match, "date")
            if self._time is not None:
                clock = _first_value(self._time, lines, "time")
                if clock is None:
                    raise Unparsed("no line matches the template's time pattern")
                text = f"{text} {clock}"
            elif "time" in match.re.groupindex and match.group("time"):
                text = f"{text} {match.group('time')}"
        text = " ".join(text.split())
        for fmt in self.spec.formats:
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise Unparsed(f"date/time {text!r} does not match datetime_format {' or '.join(map(repr, self.spec.formats))}")

    def _items(self, lines: Sequence[str]) -> list[ItemLine]:
        items: list[ItemLine] = []
        sep = self.spec.decimal_separator
        for text in lines:
            if self._void is not None:
                void = self._void.search(text)
                if void is not None:
                    self._apply_void(items, void, text)
                    continue
            match = self._item.search(text)
            if match is None:
                continue
            quantity_text = match.group("quantity")
            groups = match.re.groupindex
            items.append(
                ItemLine(
                    line_no=len(items) + 1,
                    text=text,
                    item=match.group("item").strip() if match.group("item") else "",
                    quantity=_number(quantity_text, "quantity", text, sep) if quantity_text else Decimal(1),
                    unit=_group(match, "unit"),
                    price=_number(p, "price", text, sep) if (p := _group(match, "price")) else None,
                    amount=_number(a, "amount", text, sep) if (a := _group(match, "amount")) else None,
                    voided="voided" in groups and bool(match.group("voided")),
                )
            )
        return items

    def _apply_void(self, items: list[ItemLine], void: re.Match[str], text: str) -> None:
        item = _group(void, "item")
        quantity_text = _group(void, "quantity")
        quantity = _number(quantity_text, "quantity", text, self.spec.decimal_separator) if quantity_text else None
        for index in range(len(items) - 1, -1, -1):
            line = items[index]
            if line.voided:
                continue
            if item is None or (
                line.item.upper() == item.upper() and (quantity is None or abs(line.quantity) == abs(quantity))
            ):
                items[index] = replace(line, voided=True)
                return
        what = f"{quantity_text + ' x ' if quantity_text else ''}{item}" if item else "the line before it"
        raise Unparsed(f"the void line {text.strip()!r} voids {what}, but no such item line is printed before it")

    def _check_total(self, items: list[ItemLine], lines: Sequence[str]) -> Decimal | None:
        if not items:
            raise Unparsed("no line matches the template's item pattern")
        if self._total is None:
            return None
        total_text = _first_value(self._total, lines, "total")
        total = _number(total_text, "total", total_text, self.spec.decimal_separator) if total_text else None
        if not self.spec.check_total:
            return total
        if total is None:
            raise Unparsed("check_total is on but no line matches the template's total pattern")
        added = Decimal(0)
        for line in items:
            if line.voided:
                continue
            if line.amount is not None:
                added += line.amount
            elif line.price is not None:
                added += line.price * line.quantity
            else:
                raise Unparsed(f"check_total is on but the item line {line.text.strip()!r} has no amount or price")
        if added != total:
            raise Unparsed(f"the item lines add up to {added} but the receipt's total is {total}: a line was missed")
        return total


def _maybe(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None


def _first_match(pattern: re.Pattern[str], lines: Sequence[str]) -> re.Match[str] | None:
    for text in lines:
        match = pattern.search(text)
        if match is not None:
            return match
    return None


def _first_line(pattern: re.Pattern[str], lines: Sequence[str]) -> str | None:
    match = _first_match(pattern, lines)
    return match.string.strip() if match is not None else None


def _first_value(pattern: re.Pattern[str] | None, lines: Sequence[str], name: str) -> str | None:
    if pattern is None:
        return None
    match = _first_match(pattern, lines)
    if match is None:
        return None
    return _value(match, name) or None


def _value(match: re.Match[str], name: str) -> str:
    """Return the named group, else the first group, else the whole match."""
    if name in match.re.groupindex:
        value = match.group(name)
    elif match.re.groups:
        value = match.group(1)
    else:
        value = match.group(0)
    return (value or "").strip()


def _group(match: re.Match[str], name: str) -> str | None:
    if name not in match.re.groupindex:
        return None
    value = match.group(name)
    return value.strip() if value and value.strip() else None


_NOT_NUMERIC = re.compile(r"[^0-9.,+\-]")


def parse_number(text: str, decimal_separator: str = ".") -> Decimal:
    """Read a printed number, ignoring currency signs, spaces and thousands separators.

    A trailing minus or parentheses mean negative: ``"1,234.50-"`` is -1234.50.
    """
    raw = text.strip().replace("\u2212", "-")
    negative = raw.startswith("(") and raw.endswith(")")
    cleaned = _NOT_NUMERIC.sub("", raw)
    if cleaned.endswith("-") and not cleaned.startswith("-"):
        negative, cleaned = not negative, cleaned[:-1]
    thousands = "," if decimal_separator == "." else "."
    cleaned = cleaned.replace(thousands, "").replace(decimal_separator, ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text.strip()!r} is not a number")
    return -value if negative else value


def _number(text: str, what: str, line: str, sep: str) -> Decimal:
    try:
        return parse_number(text, sep)
    except ValueError:
        raise Unparsed(f"the {what} {text.strip()!r} in the line {line.strip()!r} is not a number") from None


# -- loading ---------------------------------------------------------------------------------------

_BUILTIN = resources.files("pos_adapters") / "templates"


def builtin_names() -> list[str]:
    """Names of the templates shipped with possync."""
    return sorted(p.name.removesuffix(".toml") for p in _BUILTIN.iterdir() if p.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    """Return the TOML text of a built-in template (raises TemplateError for an unknown name)."""
    if name not in builtin_names():
        raise TemplateError(f"there is no built-in template {name!r} (built-in: {', '.join(builtin_names())})")
    return (_BUILTIN / f"{name}.toml").read_text(encoding="utf-8")


def compile_spec(data: Any, origin: str) -> ReceiptTemplate:
    """Validate template keys (from TOML or an inline config table) and compile them."""
    if isinstance(data, TemplateSpec):
        return ReceiptTemplate(data, origin)
    try:
        return ReceiptTemplate(TemplateSpec.model_validate(data), origin)
    except ValidationError as exc:
        raise TemplateError(f"{origin}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (allowed: {', '.join(_KEYS)})"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


_KEYS = [f.alias or name for name, f in TemplateSpec.model_fields.items()]


def load_builtin(name: str) -> ReceiptTemplate:
    """Load a template shipped with possync."""
    return compile_spec(tomllib.loads(builtin_text(name)), f"built-in template {name}")


def load_file(path: Path) -> ReceiptTemplate:
    """Load a template from a TOML file; raise ``TemplateError`` naming the file and every problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TemplateError(f"template file {path}: cannot be read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"template file {path}: not valid TOML: {exc}") from None
    return compile_spec(data, f"template file {path}")
