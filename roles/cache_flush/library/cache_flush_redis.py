#!/usr/bin/python
"""Delete the Redis keys that match a set of patterns, or everything when asked to.

The module runs on the host next to Redis and talks to it with the redis library (python3-redis),
so a rehearsal (check mode) counts the keys exactly as the real run deletes them: the same SCAN.
"""

from __future__ import annotations

import socket
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    import redis
except ImportError:  # pragma: no cover - reported by main()
    redis = None

DOCUMENTATION = r"""
---
module: cache_flush_redis
short_description: Delete the Redis keys matching patterns with SCAN and UNLINK, or FLUSHALL
description:
  - Walks the keys of one database with C(SCAN MATCH pattern) (never C(KEYS), which blocks the
    server) and deletes them in batches with C(UNLINK), or C(DEL) on a server older than 4.0.
  - Reports, per pattern, how many keys matched and how many were deleted.
  - With O(flushall=true) runs C(FLUSHALL) instead, which empties every database of the server,
    keys of other applications included. It reports how many keys matched the patterns and how
    many did not, so the operator sees what else went.
  - Nothing to delete means no change, so flushing an empty cache twice reports changed once.
options:
  host:
    description: Address of the Redis server, as seen from the managed host.
    type: str
    default: 127.0.0.1
  port:
    description: TCP port of the Redis server.
    type: int
    default: 6379
  db:
    description: Number of the database the patterns apply to.
    type: int
    default: 0
  password:
    description: Password of the server (C(requirepass)); empty for none.
    type: str
    default: ""
    no_log: true
  patterns:
    description: Glob-style patterns of the keys to delete, as SCAN MATCH understands them.
    type: list
    elements: str
    required: true
  batch_size:
    description: Keys asked for per SCAN call and deleted per UNLINK call.
    type: int
    default: 500
  flushall:
    description: Run FLUSHALL instead of deleting by pattern.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the connection and for each reply.
    type: float
    default: 5
requirements:
  - python3-redis (the redis library) on the managed host
notes:
  - Supports check mode (counts the keys that would go, deletes nothing).
  - Keys written while the scan runs may be missed; SCAN guarantees only the keys present for
    the whole scan.
"""

RETURN = r"""
patterns:
  description: Per pattern, the keys matched and deleted (0 in check mode) and a few examples.
  type: list
  elements: dict
  returned: always
deleted:
  description: Keys deleted in total (those that would be, in check mode).
  type: int
  returned: always
flushall:
  description: With flushall, the keys of the whole server before the flush, and how many of
    them did not match the patterns.
  type: dict
  returned: when flushall is true
"""

SAMPLE_SIZE = 5


class FlushError(Exception):
    """Redis could not be reached or refused a command; the message says what to check."""


def _connect(params: dict[str, Any], where: str) -> Any:  # noqa: ANN401 - redis.Redis, optional import
    """Open a client and prove the server answers.

    Returns:
        The client.

    Raises:
        FlushError: If the server cannot be reached or refuses the credentials.
    """
    address = f"{params['host']}:{params['port']}"
    client = redis.Redis(
        host=params["host"],
        port=params["port"],
        db=params["db"],
        password=params["password"] or None,
        socket_timeout=params["timeout"],
        socket_connect_timeout=params["timeout"],
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError as error:
        msg = (
            f"Redis at {address} (from {where}) refused the login: {error}. Set "
            "cache_flush_redis_password to the server's requirepass."
        )
        raise FlushError(msg) from error
    except redis.exceptions.ResponseError as error:
        msg = (
            f"Redis at {address} (from {where}) refused PING: {error}. If it asks for "
            "authentication, set cache_flush_redis_password."
        )
        raise FlushError(msg) from error
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        msg = (
            f"Cannot reach Redis at {address} from {where}: {error}. Check that redis-server "
            "runs there (systemctl status redis-server), that it listens on that address (bind "
            "and port in /etc/redis/redis.conf), and cache_flush_redis_host / "
            "cache_flush_redis_port."
        )
        raise FlushError(msg) from error
    return client


def _unlink(client: Any, keys: list[bytes], use_unlink: list[bool]) -> int:  # noqa: ANN401
    """Delete keys, with UNLINK while the server knows it and DEL otherwise.

    Returns:
        How many keys the server removed.
    """
    if use_unlink[0]:
        try:
            return int(client.unlink(*keys))
        except redis.exceptions.ResponseError as error:
            if "unknown command" not in str(error).lower():
                raise
            # Servers before 4.0 have no UNLINK; DEL does the same, blocking.
            use_unlink[0] = False
    return int(client.delete(*keys))


def _by_pattern(client: Any, params: dict[str, Any], delete: bool) -> list[dict[str, Any]]:  # noqa: ANN401, FBT001
    """Scan each pattern and delete its keys in batches when asked to.

    Returns:
        One record per pattern: pattern, matched, deleted and a few matched keys.
    """
    use_unlink = [True]
    report = []
    for pattern in params["patterns"]:
        matched = deleted = 0
        sample: list[str] = []
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=params["batch_size"]):
            matched += 1
            if len(sample) < SAMPLE_SIZE:
                sample.append(key.decode("utf-8", "backslashreplace"))
            if delete:
                batch.append(key)
                if len(batch) >= params["batch_size"]:
                    deleted += _unlink(client, batch, use_unlink)
                    batch = []
        if batch:
            deleted += _unlink(client, batch, use_unlink)
        report.append(
            {"pattern": pattern, "matched": matched, "deleted": deleted, "sample": sample}
        )
    return report


def _server_keys(client: Any) -> int:  # noqa: ANN401
    """Return the number of keys in every database of the server."""
    keyspace = client.info("keyspace")
    return sum(int(db.get("keys", 0)) for db in keyspace.values() if isinstance(db, dict))


def flush(params: dict[str, Any], check_mode: bool, where: str) -> dict[str, Any]:  # noqa: FBT001
    """Delete what the parameters ask for, or count it in check mode.

    Returns:
        The module result without the failure keys.

    Raises:
        FlushError: If Redis cannot be reached or a command fails.
    """
    client = _connect(params, where)
    try:
        if params["flushall"]:
            report = _by_pattern(client, params, delete=False)
            total = _server_keys(client)
            ours = sum(entry["matched"] for entry in report)
            if total and not check_mode:
                client.flushall()
            return {
                "changed": total > 0,
                "patterns": report,
                "deleted": total,
                "flushall": {"keys_before": total, "not_matching_patterns": max(total - ours, 0)},
            }
        report = _by_pattern(client, params, delete=not check_mode)
        matched = sum(entry["matched"] for entry in report)
        return {
            "changed": matched > 0,
            "patterns": report,
            "deleted": matched if check_mode else sum(entry["deleted"] for entry in report),
        }
    except redis.exceptions.RedisError as error:
        msg = f"Redis at {params['host']}:{params['port']} (from {where}) failed: {error}"
        raise FlushError(msg) from error
    finally:
        client.close()


def main() -> None:
    """Run the module."""
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 6379},
            "db": {"type": "int", "default": 0},
            "password": {"type": "str", "default": "", "no_log": True},
            "patterns": {"type": "list", "elements": "str", "required": True},
            "batch_size": {"type": "int", "default": 500},
            "flushall": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 5},
        },
        supports_check_mode=True,
    )
    if redis is None:
        module.fail_json(
            msg="The redis Python library is missing on this host: install python3-redis."
        )
    params = module.params
    if params["batch_size"] < 1:
        module.fail_json(msg=f"batch_size must be 1 or more, got {params['batch_size']}")
    if not params["flushall"] and not [p for p in params["patterns"] if p]:
        module.fail_json(msg="patterns is empty: name the keys to delete, for example 'ci:*'")
    params["patterns"] = [p for p in params["patterns"] if p]
    try:
        result = flush(params, module.check_mode, socket.gethostname())
    except FlushError as error:
        module.fail_json(msg=str(error))
    if params["flushall"] and result["flushall"]["keys_before"]:
        module.warn(
            "FLUSHALL empties every database of the server: "
            f"{result['flushall']['not_matching_patterns']} of "
            f"{result['flushall']['keys_before']} keys do not match "
            f"{', '.join(params['patterns'])} and belong to other applications."
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
