"""Celery's Redis broker transport (kombu's), with the one guard a worker needs to outlive outages.

When the broker connection drops while tasks are reserved but unacknowledged (acks_late), kombu
closes the channel and restores those messages; to do that it builds a new connection pool from
the connection's parameters, but the transport was already detached from its connection
(`Connection._do_close_transport` sets `transport.client = None`). kombu then raises
`AttributeError: 'NoneType' object has no attribute 'hostname'`, which is no connection error, so
Celery treats it as unrecoverable and the worker, with the stream consumer in it, exits. Raising a
connection error instead lets Celery reconnect as for any outage; the unacknowledged messages stay
in the broker's unacked set and come back after the visibility timeout (`restore_visible`).

Selected by `CELERY_BROKER_TRANSPORT` when the broker is Redis (themoon/settings.py).
"""

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:  # detached: the connection is closing or closed
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
