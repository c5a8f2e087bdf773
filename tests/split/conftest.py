"""The split deployment's tests use the transport tests' real servers (redis-server, a Redis Cluster, mosquitto)."""

from tests.transport.conftest import mosquitto_server, redis_aof, redis_cluster, redis_server

__all__ = ["mosquitto_server", "redis_aof", "redis_cluster", "redis_server"]
