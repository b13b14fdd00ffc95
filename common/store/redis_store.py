"""Redis StateStore: ``state_store: redis``, the state shared by instances of the daemon.

The same contract as the SQLite store (common/store/base.py); the same test suite runs
against both. Choices:

- Expiry follows the store's clock, not Redis's: every expiring record keeps its
  ``expires_at`` (a sorted-set score), a record is live while ``now < expires_at``, and
  ``purge_expired`` removes the dead ones, exactly as SQLite does. One rule for every
  backend (and for a test's fake clock); each instance's wall clock decides.
- Atomic where SQLite is transactional: multi-step changes run as Lua scripts (one
  script runs alone on the server): ``seen``, ``inbox_add`` (dedup key + counter + item),
  ``inbox_mark``, ``inbox_done``, ``delete``, ``clear``, ``push``, ``pop_all``, reads
  that must see one moment (``get``, ``items``, ``inbox_items``), ``purge_expired``.
  ``put`` is a MULTI/EXEC transaction; user data is one HSET.
- The client retries a command whose connection broke (a Redis restart leaves the pooled
  connections dead). A command whose reply was lost may have run already, so every
  change that is not idempotent by itself (``seen``, ``inbox_add``, ``push``, ``pop_all``)
  carries a one-off token: the script records its result under the token and a retry
  returns that result instead of applying the change twice.
- Redis down: every call raises StoreError (the accept path then refuses the message so
  the platform retries; /healthz turns "degraded"); the client reconnects by itself.
- Keys are ``<redis_key_prefix><kind>:<name>``. The scripts touch keys they compute, so
  this needs one Redis server (or a Sentinel-managed primary), not Redis Cluster.

Durability is Redis's: with ``appendonly yes`` (and ``appendfsync everysec`` or
``always``) a Redis restart keeps what was accepted; without it, a Redis restart loses it.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from common.log import logger
from common.store.base import (
    Clock,
    DedupKey,
    InboxItem,
    StateStore,
    StoreError,
    check_inbox_item,
    check_key,
    check_ttl,
    decode,
    encode,
    encode_users,
)
from common.store.redis_url import check_redis_url, safe_url

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "dow:"
# How long a change token remembers its result: far longer than any retry takes.
TOKEN_TTL_MS = 300_000

# -- scripts --------------------------------------------------------------------------------
# Numbers come in as repr() of Python floats and go back through ZSCORE as %.17g, so a
# comparison in Lua sees the same doubles Python would.

_LIVE = """
local function live(score, now)
  return score and (score == 'inf' or tonumber(score) > now)
end
"""

# KEYS: seen zset, seen-namespace set, token. ARGV: key, now, expires_at, namespace.
_SEEN = """
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local result = 0
if score and tonumber(score) > tonumber(ARGV[2]) then
  result = 1
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[4])
end
redis.call('SET', KEYS[3], result, 'PX', ARGV[5])
return result
"""

# KEYS: seen zset, seen-namespace set, token, id counter, all-items zset, channel zset.
# ARGV: with dedup ('1'/'0'), dedup key, now, dedup expires_at, dedup namespace,
#       channel, session, record, item key prefix, token ttl.
# Returns the new id, or -1 when the dedup key was live (nothing stored).
_INBOX_ADD = """
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
if ARGV[1] == '1' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if score and tonumber(score) > tonumber(ARGV[3]) then
    redis.call('SET', KEYS[3], -1, 'PX', ARGV[10])
    return -1
  end
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[5])
end
local id = redis.call('INCR', KEYS[4])
redis.call('HSET', ARGV[9] .. id, 'channel', ARGV[6], 'session', ARGV[7], 'record', ARGV[8], 'created', ARGV[3])
redis.call('ZADD', KEYS[5], id, id)
redis.call('ZADD', KEYS[6], id, id)
redis.call('SET', KEYS[3], id, 'PX', ARGV[10])
return id
"""

# KEYS: item. ARGV: replied.
_INBOX_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'replied', ARGV[1])
return 1
"""

# KEYS: item, all-items zset. ARGV: id, channel zset prefix.
_INBOX_DONE = """
local channel = redis.call('HGET', KEYS[1], 'channel')
if not channel then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', ARGV[2] .. channel, ARGV[1])
return 1
"""

# KEYS: channel zset. ARGV: item key prefix.
_INBOX_ITEMS = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'session', 'record', 'created', 'replied')
  if f[2] then out[#out + 1] = {id, f[1], f[2], f[3], f[4]} end
end
return out
"""

# KEYS: values hash, expiry zset. ARGV: key, now.
_GET = _LIVE + """
if not live(redis.call('ZSCORE', KEYS[2], ARGV[1]), tonumber(ARGV[2])) then return false end
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: values hash, expiry zset. ARGV: key, now.
_DELETE = _LIVE + """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if live(score, tonumber(ARGV[2])) then return 1 end
return 0
"""

# KEYS: values hash, expiry zset. ARGV: now. Returns key, value, key, value...
_ITEMS = """
local keys = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local out = {}
for _, key in ipairs(keys) do
  local value = redis.call('HGET', KEYS[1], key)
  if value then out[#out + 1] = key; out[#out + 1] = value end
end
return out
"""

# KEYS: values hash, expiry zset, namespace set. ARGV: now, namespace.
_CLEAR = """
local live = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[1], '+inf')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return live
"""

# KEYS: list, token. ARGV: value, token ttl.
_PUSH = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[2])
return 1
"""

# KEYS: list, the token's copy of it. ARGV: token ttl.
# The queue moves under the token, is returned from there and deleted by the caller once
# it has the values: a retry after a lost reply finds them there.
_POP_ALL = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""

# KEYS: kv-namespace set, seen-namespace set. ARGV: now, key prefix.
_PURGE = """
local removed = 0
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local values, expiry = ARGV[2] .. 'kv:' .. ns, ARGV[2] .. 'kvx:' .. ns
  local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', ARGV[1])
  for i = 1, #dead, 500 do
    redis.call('HDEL', values, unpack(dead, i, math.min(i + 499, #dead)))
  end
  removed = removed + redis.call('ZREMRANGEBYSCORE', expiry, '-inf', ARGV[1])
  if redis.call('ZCARD', expiry) == 0 then redis.call('SREM', KEYS[1], ns) end
end
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local seen = ARGV[2] .. 'seen:' .. ns
  removed = removed + redis.call('ZREMRANGEBYSCORE', seen, '-inf', ARGV[1])
  if redis.call('ZCARD', seen) == 0 then redis.call('SREM', KEYS[2], ns) end
end
return removed
"""


# Leases (an account lock now; per-session work later) use Redis's own expiry: they are about
# whether a process is alive, which no instance's clock should decide alone.
# KEYS: lease. ARGV: owner, ttl ms. Returns the holder: the owner itself once taken or renewed.
_LEASE_TAKE = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"""

# KEYS: lease. ARGV: owner. Deletes it only while the owner holds it.
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore(StateStore):
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time,
                 connect_timeout: float = 2.0, timeout: float = 5.0) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        problem = check_redis_url(url)
        if problem:
            raise ValueError(f"redis_url {safe_url(str(url))!r} is not a Redis URL: {problem}")
        if not isinstance(prefix, str):
            raise ValueError("redis_key_prefix must be a string")
        self.url = safe_url(url.strip())
        self.prefix = prefix
        self._clock = clock
        self._redis_errors = (redis.RedisError,)
        self._connection_errors = (redis.ConnectionError, redis.TimeoutError)
        self._closed = False
        self._close_lock = threading.Lock()
        self._client = redis.Redis.from_url(
            url.strip(), decode_responses=True, socket_connect_timeout=connect_timeout,
            socket_timeout=timeout, health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        c = self._client
        self._seen = c.register_script(_SEEN)
        self._inbox_add = c.register_script(_INBOX_ADD)
        self._inbox_mark = c.register_script(_INBOX_MARK)
        self._inbox_done = c.register_script(_INBOX_DONE)
        self._inbox_items = c.register_script(_INBOX_ITEMS)
        self._get = c.register_script(_GET)
        self._delete = c.register_script(_DELETE)
        self._items = c.register_script(_ITEMS)
        self._clear = c.register_script(_CLEAR)
        self._push = c.register_script(_PUSH)
        self._pop_all = c.register_script(_POP_ALL)
        self._purge = c.register_script(_PURGE)
        self._lease_take = c.register_script(_LEASE_TAKE)
        self._lease_release = c.register_script(_LEASE_RELEASE)
        try:
            self._call("open", self._check_schema)
            purged = self.purge_expired()
        except StoreError as exc:
            self._client.close()
            raise StoreError(f"{str(exc).rstrip('.')}. Start Redis, or correct redis_url.") from exc
        logger.info("[store] state store Redis %s opened (key prefix %r, %d expired entries purged)",
                    self.url, self.prefix, purged)

    # -- plumbing ------------------------------------------------------------------
    def _key(self, kind: str, name: str | None = None) -> str:
        # An empty name is a name too ("" namespace): only None means "no name part".
        return f"{self.prefix}{kind}" if name is None else f"{self.prefix}{kind}:{name}"

    def _token(self) -> str:
        return self._key("op", uuid.uuid4().hex)

    def _now(self) -> str:
        return repr(float(self._clock()))

    def _call(self, op: str, fn, *args, **kwargs):
        if self._closed:
            raise StoreError(f"the Redis state store {self.url} is closed")
        try:
            return fn(*args, **kwargs)
        except self._connection_errors as exc:
            raise StoreError(f"Redis at {self.url} is unreachable ({op}): {exc}") from exc
        except self._redis_errors as exc:
            raise StoreError(f"Redis at {self.url}: {op} failed: {exc}") from exc

    def _check_schema(self) -> None:
        # SET NX: the first instance writes the version; later ones read it.
        key = self._key("schema")
        self._client.set(key, SCHEMA_VERSION, nx=True)
        found = self._client.get(key)
        if not str(found).isdigit() or int(found) > SCHEMA_VERSION:
            raise StoreError(
                f"Redis at {self.url} holds state of schema version {found!r} under the prefix "
                f"{self.prefix!r}, which this program does not understand ({SCHEMA_VERSION}). Upgrade "
                f"the program, or choose another redis_key_prefix."
            )

    # -- user data ----------------------------------------------------------------
    def load_user_datas(self) -> dict[str, dict]:
        rows = self._call("load_user_datas", self._client.hgetall, self._key("users"))
        return {user: decode(data) for user, data in rows.items()}

    def save_user_datas(self, changed: dict[str, dict]) -> None:
        encoded = encode_users(changed)
        if encoded:  # one HSET: every user or none
            self._call("save_user_datas", self._client.hset, self._key("users"), mapping=encoded)

    def delete_user_data(self, user: str) -> None:
        check_key("user", user)
        self._call("delete_user_data", self._client.hdel, self._key("users"), user)

    # -- key/value ------------------------------------------------------------------
    def _kv_keys(self, namespace: str) -> list[str]:
        return [self._key("kv", namespace), self._key("kvx", namespace)]

    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        check_key("namespace", namespace)
        check_key("key", key)
        text = self._call("get", self._get, keys=self._kv_keys(namespace), args=[key, self._now()])
        return default if text is None else decode(text)

    def put(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        check_key("namespace", namespace)
        check_key("key", key)
        check_ttl(ttl)
        text = encode(value)
        expires_at = "+inf" if ttl is None else repr(float(self._clock()) + ttl)
        values, expiry = self._kv_keys(namespace)

        def write() -> None:
            # MULTI/EXEC: the value, its expiry and the namespace's registration land together.
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(values, key, text)
            pipe.zadd(expiry, {key: expires_at})
            pipe.sadd(self._key("namespaces", "kv"), namespace)
            pipe.execute()

        self._call("put", write)

    def delete(self, namespace: str, key: str) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        return bool(self._call("delete", self._delete, keys=self._kv_keys(namespace), args=[key, self._now()]))

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        check_key("namespace", namespace)
        flat = self._call("items", self._items, keys=self._kv_keys(namespace), args=[self._now()])
        return sorted((flat[i], decode(flat[i + 1])) for i in range(0, len(flat), 2))

    def clear(self, namespace: str) -> int:
        check_key("namespace", namespace)
        keys = self._kv_keys(namespace) + [self._key("namespaces", "kv")]
        return int(self._call("clear", self._clear, keys=keys, args=[self._now(), namespace]))

    # -- dedup ------------------------------------------------------------------------
    def _seen_keys(self, namespace: str) -> list[str]:
        return [self._key("seen", namespace), self._key("namespaces", "seen")]

    def seen(self, namespace: str, key: str, ttl: float) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        check_ttl(ttl, required=True)
        now = float(self._clock())
        result = self._call("seen", self._seen, keys=self._seen_keys(namespace) + [self._token()],
                            args=[key, repr(now), repr(now + ttl), namespace, TOKEN_TTL_MS])
        return int(result) == 1

    def is_seen(self, namespace: str, key: str) -> bool:
        check_key("namespace", namespace)
        check_key("key", key)
        score = self._call("is_seen", self._client.zscore, self._key("seen", namespace), key)
        return score is not None and float(score) > float(self._clock())

    # -- inbox --------------------------------------------------------------------------
    def _item_key(self, item_id: int) -> str:
        return self._key("inbox:item", str(int(item_id)))

    def inbox_add(self, channel: str, session: str, record: Any, dedup: DedupKey | None = None) -> int | None:
        check_inbox_item(channel, session, dedup)
        text = encode(record)
        now = float(self._clock())
        namespace = dedup.namespace if dedup is not None else ""
        keys = self._seen_keys(namespace) + [
            self._token(), self._key("inbox:next"), self._key("inbox:all"), self._key("inbox:channel", channel)]
        args = ["1" if dedup else "0", dedup.key if dedup else "", repr(now),
                repr(now + dedup.ttl) if dedup else "0", namespace,
                channel, session, text, self._key("inbox:item") + ":", TOKEN_TTL_MS]
        item_id = int(self._call("inbox_add", self._inbox_add, keys=keys, args=args))
        return None if item_id < 0 else item_id

    def inbox_mark(self, item_id: int, replied: str) -> bool:
        check_key("replied", replied)
        return bool(self._call("inbox_mark", self._inbox_mark, keys=[self._item_key(item_id)], args=[replied]))

    def inbox_done(self, item_id: int) -> bool:
        keys = [self._item_key(item_id), self._key("inbox:all")]
        args = [int(item_id), self._key("inbox:channel") + ":"]
        return bool(self._call("inbox_done", self._inbox_done, keys=keys, args=args))

    def inbox_items(self, channel: str) -> list[InboxItem]:
        check_key("channel", channel)
        rows = self._call("inbox_items", self._inbox_items, keys=[self._key("inbox:channel", channel)],
                          args=[self._key("inbox:item") + ":"])
        return [InboxItem(int(item_id), channel, session, decode(record), float(created), replied)
                for item_id, session, record, created, replied in rows]

    def inbox_count(self, channel: str | None = None) -> int:
        if channel is None:
            return int(self._call("inbox_count", self._client.zcard, self._key("inbox:all")))
        check_key("channel", channel)
        return int(self._call("inbox_count", self._client.zcard, self._key("inbox:channel", channel)))

    # -- queues -------------------------------------------------------------------------
    def _queue_key(self, namespace: str, key: str) -> str:
        # JSON keeps ("a:b", "c") and ("a", "b:c") apart.
        return self._key("queue", json.dumps([namespace, key], ensure_ascii=False))

    def push(self, namespace: str, key: str, value: Any) -> None:
        check_key("namespace", namespace)
        check_key("key", key)
        text = encode(value)
        self._call("push", self._push, keys=[self._queue_key(namespace, key), self._token()], args=[text, TOKEN_TTL_MS])

    def pop_all(self, namespace: str, key: str) -> list:
        check_key("namespace", namespace)
        check_key("key", key)
        token = self._token()
        texts = self._call("pop_all", self._pop_all, keys=[self._queue_key(namespace, key), token], args=[TOKEN_TTL_MS])
        if texts:
            try:
                self._call("pop_all", self._client.delete, token)
            except StoreError as exc:  # it expires by itself; the values are the caller's now
                logger.warning("[store] %s", exc)
        return [decode(text) for text in texts]

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self) -> int:
        keys = [self._key("namespaces", "kv"), self._key("namespaces", "seen")]
        return int(self._call("purge_expired", self._purge, keys=keys, args=[self._now(), self.prefix]))

    # -- leases (not part of the StateStore contract: only a shared store needs them) ---------
    def lease_key(self, name: str) -> str:
        return self._key("lease", name)

    def take_lease(self, name: str, owner: str, ttl: float) -> str:
        """Take or renew the lease `name` for `ttl` seconds unless another owner holds it.
        Returns the holder: `owner` when it is ours now."""
        check_key("lease", name)
        check_key("owner", owner)
        check_ttl(ttl, required=True)
        return self._call("take_lease", self._lease_take, keys=[self.lease_key(name)],
                          args=[owner, max(1, int(ttl * 1000))])

    def release_lease(self, name: str, owner: str) -> bool:
        """Give the lease back if `owner` holds it."""
        return bool(self._call("release_lease", self._lease_release, keys=[self.lease_key(name)], args=[owner]))

    def ping(self) -> None:
        """Raise StoreError when Redis cannot be reached."""
        self._call("ping", self._client.ping)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._client.close()
        except Exception as exc:  # noqa: BLE001 - closing must not fail a stop
            logger.warning("[store] closing Redis %s: %s", self.url, exc)
