"""The Redis broker transport (config/broker.py): what a worker's connection does when Redis
stalls or goes away, in-process on a Redis of the test's own. The worker processes under the
same faults are in test_faults_redis.py; these make each failure happen every time."""

import logging
import ssl

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors

from config import broker
from config.celery import app

QUEUE = "bnpl.tests.broker"


def test_redis_broker_urls_get_the_services_transport_and_other_schemes_their_own():
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0"):
        assert type(Connection(url).transport) is broker.Transport, url
    assert Connection("rediss://127.0.0.1:1/0").ssl == {"ssl_cert_reqs": ssl.CERT_NONE}, "kombu's TLS default kept"
    assert type(Connection("memory://").transport).__module__ == "kombu.transport.memory"
    if settings.REDIS_URL:
        with app.connection_for_write() as connection:
            assert type(connection.transport) is broker.Transport


@pytest.fixture
def connection(private_redis):
    """A broker connection to the private Redis, with the service's transport options (short
    socket timeout: a stalled Redis fails an operation in half a second)."""
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    connection = Connection(private_redis.url(0), transport_options=options)
    yield connection
    ignore_errors(connection, connection.close)


def take_one(channel):
    """Publish a message and take it without acknowledging it, as a worker does (acks_late)."""
    channel.queue_declare(queue=QUEUE)
    Producer(channel).publish({"task": "test"}, routing_key=QUEUE)
    message = channel.basic_get(QUEUE, no_ack=False)
    assert message is not None
    return message


def wait_for_work(connection) -> None:
    """Run the event loop as a worker does until nothing arrives for 0.1 s (the subscription's
    confirmation comes first)."""
    for _ in range(10):
        try:
            connection.drain_events(timeout=0.1)
        except TimeoutError:
            return
    raise AssertionError("the event loop never went idle")


@pytest.mark.faults
def test_an_ack_that_cannot_reach_a_stalled_redis_still_frees_the_prefetch_slot(private_redis, connection, caplog):
    channel = connection.default_channel
    channel.basic_qos(0, 1, False)  # a solo worker's prefetch: one message at a time
    message = take_one(channel)
    assert not channel.qos.can_consume()

    private_redis.freeze()
    try:
        # As the worker acks a task (celery.worker.request): logged as "Couldn't ack", not raised.
        message.ack_log_error(logging.getLogger("celery.worker.request"), connection.connection_errors)
    finally:
        private_redis.thaw()
    assert "Couldn't ack" in caplog.text

    # kombu's QoS kept the delivery counted: the worker never asked Redis for work again.
    assert channel.qos.can_consume(), "the slot of the finished task is free"


@pytest.mark.faults
def test_a_connection_lost_with_unacked_messages_is_dropped_without_error_as_celery_does(private_redis, connection):
    channel = connection.default_channel
    take_one(channel)  # an ETA task held, or a task running
    Consumer(channel, queues=[Queue(QUEUE)], accept=["json"]).consume()
    # The worker's remote-control mailbox (celery.worker.pidbox): a channel of its own, with a
    # fanout queue deleted when it closes. With Redis gone that close fails, and collect() then
    # leaves the task channel as its own failed close left it.
    mailbox = Queue("bnpl.tests.mailbox", Exchange("bnpl.tests.mailbox", type="fanout"), auto_delete=True)
    Consumer(connection.channel(), queues=[mailbox], accept=["json"]).consume()
    wait_for_work(connection)
    assert channel._in_poll, "a BRPOP in flight"

    private_redis.kill()

    # celery.worker.consumer.Consumer.on_connection_error_after_connected: collect, then close.
    # The close raised AttributeError (kombu's close left the channel open in collect), which
    # the worker took for an unrecoverable error and exited.
    connection.collect(socket_timeout=5.0)
    ignore_errors(connection, connection.close)
    assert channel.closed
