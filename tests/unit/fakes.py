"""Test doubles for unit tests: an in-memory backend that records what the manager asks of it."""

import threading

import fakeredis
from redis.client import PubSub

from mcp_tenants.errors import TenantUnreachable


class FakeResource:
    def __init__(self, config):
        self.config = config
        self.closed = False


class FakeBackend:
    """Opens FakeResources; ``unreachable`` hosts fail verification."""

    server = "postgres"

    def __init__(self, config_type, unreachable=("down.example",)):
        self.config_type = config_type
        self.unreachable = set(unreachable)
        self.opened = []
        self.lock = threading.Lock()

    def open(self, config):
        resource = FakeResource(config)
        with self.lock:
            self.opened.append(resource)
        return resource

    def interrupt(self, resource):
        resource.interrupted = True

    def close(self, resource):
        resource.closed = True

    def verify(self, config):
        if config.host in self.unreachable:
            raise TenantUnreachable(f"cannot connect to {config.host}")


class HalfOpenSubscription(fakeredis.FakeRedis):
    """A client whose pub/sub subscriptions stay open and never deliver a message."""

    def pubsub(self, **kwargs):
        pubsub = super().pubsub(**kwargs)
        pubsub.subscribe = lambda *channels: PubSub.subscribe(pubsub, "nothing-is-published-here")
        return pubsub
