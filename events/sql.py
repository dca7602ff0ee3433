"""The events app's hand-written SQL: an event and a customer's notifications recorded by a
statement that writes its own rows first (a plan offered), in the same PostgreSQL statement.

Like the ledger's (``ledger.sql``), each function returns ``WITH`` items that read a relation
the caller's statement names, and decides what ``event_record`` and ``notifications_queue``
decide in Python, from the same rows: an event's delivery status from its merchant's webhook
URL as committed, a notification's status from the customer's address on its channel. Tests
hold each equal to the Python path (bnpl/tests/test_checkout.py, the offer).

After running the statement, the caller queues what those functions queue after commit:
``event_dispatch_after_commit`` for an event recorded PENDING, ``notifications_send_after_commit``
when a notification was recorded PENDING.
"""

from accounts.models import User
from events.models import Event, Notification
from events.notifications import CHANNELS

_USERS = User._meta.db_table
_EVENTS = Event._meta.db_table
_NOTIFICATIONS = Notification._meta.db_table
# The address each channel is sent to, by the user column that holds it (notifications._send_one).
_ADDRESS = {Notification.Channel.EMAIL: "email", Notification.Channel.SMS: "phone_number"}


def _relation(name: str) -> str:
    if not name.isidentifier():
        raise ValueError("a relation of the statement is named by an identifier")
    return name


def event_record_cte(*, rows: str, order: str = "") -> str:
    """A ``WITH`` item (to follow a comma) named ``events_recorded`` that stores one event per
    row of relation ``rows`` (columns ``public_id``, ``merchant_id``, ``type``, ``data`` as
    ``jsonb``, ``created_at``, ``give_up_at``), as ``event_record`` does: PENDING when the
    merchant has a webhook URL, else NO_ENDPOINT; in the order of its column ``order`` when
    named (their ids then follow it). It returns ``id`` and ``delivery_status``."""
    rows = _relation(rows)
    ordered = f" ORDER BY r.{_relation(order)}" if order else ""
    # Table names from the models, states from their choices, the relation's name checked.
    return f"""
events_recorded AS (
  INSERT INTO {_EVENTS} (public_id, merchant_id, type, data, created_at, delivery_status, attempts,
                         next_attempt_at, give_up_at)
  SELECT r.public_id, r.merchant_id, r.type, r.data, r.created_at,
         CASE WHEN m.webhook_url <> '' THEN '{Event.Delivery.PENDING}' ELSE '{Event.Delivery.NO_ENDPOINT}' END,
         0, r.created_at, r.give_up_at
  FROM {rows} r JOIN {_USERS} m ON m.id = r.merchant_id{ordered}
  RETURNING id, delivery_status
)"""  # noqa: S608 - see above  # nosec B608


def notifications_queue_ctes(*, rows: str) -> str:
    """``WITH`` items (to follow a comma) that record, as ``notifications_queue`` does, each
    row of relation ``rows`` (columns ``customer_id``, ``kind``, ``cause``, ``subject``,
    ``body``, ``created_at``) on every channel: PENDING when the customer has an address on
    it, else SKIPPED; a cause already recorded is left alone. Adds ``notifications_rows``
    (every message meant, with its ``status``) to the statement: a PENDING one among them
    means a send is due once the transaction commits."""
    rows = _relation(rows)
    channels = ", ".join(f"('{channel}', {position})" for position, channel in enumerate(CHANNELS))
    status = " ".join(
        f"WHEN c.channel = '{channel}' THEN CASE WHEN COALESCE(u.{column}, '') <> '' "
        f"THEN '{Notification.Status.PENDING}' ELSE '{Notification.Status.SKIPPED}' END"
        for channel, column in _ADDRESS.items()
    )
    # Table, column and state names from the models, the relation's name checked.
    return f"""
notifications_rows AS (
  SELECT r.customer_id, r.kind, c.channel, r.cause, r.subject, r.body, CASE {status} END AS status,
         r.created_at, c.position
  FROM {rows} r JOIN {_USERS} u ON u.id = r.customer_id
  CROSS JOIN (VALUES {channels}) AS c(channel, position)
), notifications_written AS (
  INSERT INTO {_NOTIFICATIONS} (customer_id, kind, channel, cause, subject, body, status, error, created_at)
  SELECT customer_id, kind, channel, cause, subject, body, status, '', created_at
  FROM notifications_rows ORDER BY position
  ON CONFLICT DO NOTHING
)"""  # noqa: S608 - see above  # nosec B608


def notifications_pending_sql() -> str:
    """A SQL boolean over ``notifications_queue_ctes``' rows: whether one is to be sent."""
    return f"EXISTS (SELECT 1 FROM notifications_rows WHERE status = '{Notification.Status.PENDING}')"  # noqa: S608  # nosec B608


# notifications_queue's rows in one statement: the messages as arrays, the addresses read and
# the rows written by the statement itself.
_QUEUE_SQL = (
    "WITH items (customer_id, kind, cause, subject, body, created_at) AS ("  # noqa: S608 - this module's SQL  # nosec B608
    " SELECT * FROM UNNEST(%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::text[], %s::timestamptz[])"
    ")," + notifications_queue_ctes(rows="items") + " SELECT " + notifications_pending_sql()
)


def notifications_queue_sql(cursor, items: list[tuple[int, str, str, str, str]], now) -> bool:
    """Record ``(customer_id, kind, cause, subject, body)`` messages as ``notifications_queue``
    does, in one statement; returns whether one of them is to be sent."""
    columns = list(zip(*items, strict=True))
    cursor.execute(_QUEUE_SQL, [*(list(column) for column in columns), [now] * len(items)])
    return cursor.fetchone()[0]
