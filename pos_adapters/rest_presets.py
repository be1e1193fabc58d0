"""Presets for well-known POS REST APIs: how to page them and how their records become transactions.

``shopify-orders`` reads Shopify's Admin REST API orders endpoint
(``GET /admin/api/<version>/orders.json``), the shape most POS and commerce platforms share: orders
with line items, refunds with refund line items, cancellations.

- A sale: ``shopify-<order id>``, one line per line item (``line_no`` is the line item's id, so edits
  that reorder lines keep their ids); the item is the line's ``sku``, else its ``variant_id``; gift
  cards and lines without a SKU or variant move no stock.
- A refund: ``shopify-<order id>-refund-<refund id>``, a return of each refund line item that goes back
  to stock (``restock_type`` other than ``no_restock``: a refund without restock moves nothing).
- A cancelled order: the reversal (a post-void) of the sale if it was captured; nothing otherwise.
- Only orders of ``location_id`` are taken when the source sets it (the store's Shopify location).
- Paging follows the ``Link: <...>; rel="next"`` header; the cursor is ``updated_at_min`` with the
  source's overlap; the token travels in ``X-Shopify-Access-Token`` (``auth.type = "header"``).

Invariant: a converter only builds POS transaction JSON; validation and normalisation stay in
``transactions`` (the one code path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def get_path(data: Any, path: str) -> Any:
    """Return the value at a dotted path (``a.b.0.c``; list indexes as numbers), or None."""
    current = data
    for part in path.split("."):
        if part == "":
            continue
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


Converter = Callable[[Any, Any, Callable[[str], bool]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Preset:
    """A POS API shape: polling defaults, the record's id field, and the record converter."""

    defaults: Mapping[str, Any]
    id_field: str
    convert: Converter


def shopify_orders(order: Any, settings: Any, captured: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Turn one Shopify order into its sale, refund and cancellation transactions."""
    location = getattr(settings, "location_id", None)
    if location and str(order.get("location_id")) != str(location):
        return []
    order_id = str(order["id"])
    sale_id = f"shopify-{order_id}"
    terminal = str(order.get("device_id") or order.get("source_name") or "")
    if order.get("cancelled_at"):
        if not captured(sale_id):
            return []
        return [
            {
                "transaction_id": f"{sale_id}-cancelled",
                "terminal_id": terminal,
                "occurred_at": order["cancelled_at"],
                "kind": "post_void",
                "voids": {"transaction_id": sale_id},
            }
        ]
    documents = []
    lines = [_line(item) for item in order.get("line_items") or [] if _moves_stock(item)]
    if lines:
        documents.append(
            {
                "transaction_id": sale_id,
                "terminal_id": terminal,
                "occurred_at": order.get("processed_at") or order["created_at"],
                "kind": "sale",
                "currency": order.get("currency"),
                "lines": lines,
            }
        )
    for refund in order.get("refunds") or []:
        returned = [
            {**_line(entry.get("line_item") or {}), "line_no": int(entry["id"]), "quantity": entry["quantity"]}
            for entry in refund.get("refund_line_items") or []
            if entry.get("restock_type") != "no_restock" and _moves_stock(entry.get("line_item") or {})
        ]
        if returned:
            documents.append(
                {
                    "transaction_id": f"{sale_id}-refund-{refund['id']}",
                    "terminal_id": terminal,
                    "occurred_at": refund.get("processed_at") or refund["created_at"],
                    "kind": "return",
                    "currency": order.get("currency"),
                    "lines": returned,
                }
            )
    return documents


def _moves_stock(item: Mapping[str, Any]) -> bool:
    return not item.get("gift_card") and bool(item.get("sku") or item.get("variant_id"))


def _line(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "line_no": int(item["id"]),
        "item": str(item.get("sku") or item.get("variant_id")),
        "quantity": item.get("quantity"),
        "unit_price": item.get("price"),
    }


PRESETS: dict[str, Preset] = {
    "shopify-orders": Preset(
        defaults={
            "cursor": "updated_since",
            "since_param": "updated_at_min",
            "page_size_param": "limit",
            "records": "orders",
            "updated_field": "updated_at",
            "params": {"status": "any", "order": "updated_at asc"},
        },
        id_field="id",
        convert=shopify_orders,
    ),
}
