"""What a person can do about an exception: retry it or resolve it, with an answer in words.

Shared by the CLI (and later the status page and API) so each surface behaves the same.
"""

from __future__ import annotations

from agent.mapping import ItemMaster
from outbox.exceptions import ExceptionQueue
from outbox.queue import Outbox
from outbox.schema import Category, ExceptionStatus


class CannotRetry(ValueError):
    """The exception cannot be retried as it is; the message says what to do instead."""


def retry_exception(outbox: Outbox, queue: ExceptionQueue, items: ItemMaster, exception_id: int) -> str:
    """Retry one exception; return what happened, or raise ``CannotRetry`` with the way forward."""
    view = queue.get(exception_id)
    if view.status != ExceptionStatus.OPEN:
        raise CannotRetry(f"exception {exception_id} is already {view.status}")
    if view.category == Category.REJECTED:
        queue.requeue(exception_id, "sent again by an operator")
        return f"exception {exception_id}: movement queued for delivery again"
    if view.category in (Category.UNKNOWN_ITEM, Category.UNKNOWN_UNIT):
        movement = queue.held_movement(exception_id)
        if movement is None:
            raise CannotRetry(f"exception {exception_id} no longer holds a movement")
        mapped, issue = items.map_one(movement)
        if issue is not None:
            queue.touch(exception_id, issue.message)
            raise CannotRetry(
                f"still not mappable with the cached item master ({len(items)} items): {issue.message}. "
                "Add the item (or unit) in the WMS; the agent retries after its next item-master refresh."
            )
        outbox.release_held([mapped], "mapped on operator retry")
        return f"exception {exception_id}: item now maps to {mapped.sku}; movement queued for delivery"
    if view.category == Category.POST_VOID:
        if view.code == "VOID_WAITING":
            raise CannotRetry(
                f"exception {exception_id} is a post-void waiting for the transaction it voids; possync reverses "
                "that transaction's lines by itself the moment they are captured, so there is nothing to retry. "
                "If that transaction will never reach possync, resolve this exception."
            )
        raise CannotRetry(
            f"exception {exception_id} ({view.code}) needs a person: {view.message}. "
            "Nothing can be retried as it is; resolve it once it is dealt with."
        )
    if view.category == Category.STORAGE:
        raise CannotRetry(
            f"exception {exception_id} records that the outbox was damaged and replaced; what could be read was "
            f"already queued again. Keep the set-aside copy ({view.source_ref}) for IT, then resolve this exception."
        )
    raise CannotRetry(
        f"exception {exception_id} is a line possync could not read ({view.code}); nothing can be sent "
        "as it is. Correct it at the POS and export it again, then resolve this exception."
    )


def resolve_exception(queue: ExceptionQueue, exception_id: int, note: str) -> str:
    """Close an exception without delivering it; return what happened."""
    view = queue.get(exception_id)
    if view.status != ExceptionStatus.OPEN:
        raise CannotRetry(f"exception {exception_id} is already {view.status}")
    queue.resolve(exception_id, note)
    tail = "; its movement will not be sent" if view.event_id else ""
    return f"exception {exception_id} resolved{tail}"
