"""The Redis broker transport: kombu's own, with two fixes so that a worker lives through a
Redis that stalls or goes away and takes work again once it is back (docs/FAULTS.md, "Redis
stops"). Both are bugs of kombu 5.7 / Celery 5.7 (still in their main branches), not of the
configuration; no setting avoids them.

1. A worker that stops consuming after a stall. kombu's Redis ``QoS.ack`` removes the message
   from Redis's unacked index and only then forgets the delivery; when that removal fails (a
   stalled Redis: ``Couldn't ack ..., reason: TimeoutError``), the delivery stays counted
   against the channel's prefetch limit for good. The limit is the pool's size with
   ``worker_prefetch_multiplier = 1``, so after as many failed acks as it has processes (one,
   for a solo pool) the worker never sends Redis another BRPOP: no error, no reconnect, nothing
   more in its log. ``QoS`` below forgets the delivery whatever happens to the removal, as
   kombu does when it succeeds. A removal that did not reach Redis leaves the message in its
   unacked index, so Redis hands it out again after the visibility timeout: the task runs
   twice, which costs work, not a double effect (every task is idempotent).

2. A worker that exits when Redis goes away while it holds unacknowledged messages (an ETA
   task waiting, a task running). Celery, on a lost connection, closes it twice: in
   ``Connection.collect()``, then ``close()`` (celery/celery#10242). In the first, kombu's
   ``Channel.close`` reads the reply of the BRPOP in flight and lets the connection error of
   that read escape: the channel stays open. ``collect()`` then detaches the transport from
   its connection (``client = None``), and the second close, restoring the unacked messages
   through a new pool built from that ``None``, raises ``AttributeError: 'NoneType' object has
   no attribute 'hostname'``, which Celery does not take for a connection error:
   "Unrecoverable error", the worker exits. ``Channel.close`` below goes on closing when there
   is no reply left to read on a connection that is gone, so the second close has nothing to do.

kombu picks a transport class by the broker URL's scheme in ``TRANSPORT_ALIASES``, the table
transports register in; ``register()`` (called by config.celery, before any connection) puts
this one under ``redis`` and ``rediss``. Not ``broker_transport``: that would force one class
on every URL (a ``memory://`` or ``sqs://`` broker too) and lose what kombu keys on the scheme
(``rediss://`` gets TLS by default).
"""

from queue import Empty

from kombu.transport import TRANSPORT_ALIASES, redis, virtual

SCHEMES = ("redis", "rediss")


class QoS(redis.QoS):
    """Forgets a delivery once it is acknowledged or rejected, even when Redis could not be told."""

    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        finally:
            virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue=requeue)
        finally:
            virtual.QoS.ack(self, delivery_tag)


class Channel(redis.Channel):
    QoS = QoS

    def close(self):
        """Close, even when the connection a BRPOP was sent on is gone (no reply will come)."""
        if self._in_poll:
            try:
                self._brpop_read()
            except (Empty, *self.connection_errors):
                pass  # kombu's own close ignores Empty only
        super().close()


class Transport(redis.Transport):
    Channel = Channel


def register() -> None:
    """Make this the transport of ``redis://`` and ``rediss://`` broker URLs in this process."""
    for scheme in SCHEMES:
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
