"""API tokens: created once, stored hashed, each scoped to one tenant; lookups cached briefly."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Final

import asyncpg

from runmesh.gateway.runs_store import DB_TIMEOUT_S

TOKEN_PREFIX: Final = "rmt_"
DEFAULT_CACHE_TTL_S: Final = 30.0  # RUNMESH_TOKEN_CACHE_TTL_S: a revoked token stops within this
_CACHE_SIZE: Final = 10_000


def hash_token(token: str) -> bytes:
    """The stored form of a token (tokens are 256 random bits, so plain SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).digest()


async def create_token(pool: asyncpg.Pool, tenant: str, name: str = "") -> str:
    """Create a token for `tenant`; the returned value is shown once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await pool.execute(
        "INSERT INTO runs.api_tokens (id, tenant, name, token_sha256) VALUES ($1, $2, $3, $4)",
        uuid.uuid4(),
        tenant,
        name,
        hash_token(token),
    )
    return token


async def revoke_tokens(
    pool: asyncpg.Pool,
    *,
    token: str | None = None,
    tenant: str | None = None,
    name: str | None = None,
) -> list[str]:
    """Revoke the token `token`, or every unrevoked token of `tenant` (named `name` if given).

    Returns the tenants of the tokens revoked now (empty when none matched or all were revoked
    already). Gateways notice within their token cache TTL, open SSE streams included.
    """
    if token is not None:
        rows = await pool.fetch(
            "UPDATE runs.api_tokens SET revoked_at = now()"
            " WHERE token_sha256 = $1 AND revoked_at IS NULL RETURNING tenant",
            hash_token(token),
        )
    elif tenant is not None:
        rows = await pool.fetch(
            "UPDATE runs.api_tokens SET revoked_at = now()"
            " WHERE tenant = $1 AND ($2::text IS NULL OR name = $2) AND revoked_at IS NULL"
            " RETURNING tenant",
            tenant,
            name,
        )
    else:
        raise ValueError("revoke_tokens needs a token or a tenant")
    return [row["tenant"] for row in rows]


class TokenCache:
    """Resolves tokens to tenants, remembering answers for a short while.

    Every API call and SSE connection authenticates; without the cache each would cost a
    database round trip. An answer is trusted for `ttl_s`: revoking a token (setting
    `revoked_at`) takes effect within that, in every gateway process.
    """

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float = DEFAULT_CACHE_TTL_S) -> None:
        self._pool = pool
        self.ttl_s = ttl_s
        # digest -> (tenant or None, when it was read from the database)
        self._entries: dict[bytes, tuple[str | None, float]] = {}

    async def lookup(self, token: str, *, max_age_s: float | None = None) -> str | None:
        """The tenant of a valid, unrevoked token, or None.

        A cached answer older than `max_age_s` (default: the TTL) is read again.
        """
        digest = hash_token(token)
        now = time.monotonic()
        max_age = self.ttl_s if max_age_s is None else min(max_age_s, self.ttl_s)
        cached = self._entries.get(digest)
        if cached is not None and now - cached[1] < max_age:
            return cached[0]
        tenant: str | None = await self._pool.fetchval(
            "UPDATE runs.api_tokens SET last_used_at = now()"
            " WHERE token_sha256 = $1 AND revoked_at IS NULL RETURNING tenant",
            digest,
            timeout=DB_TIMEOUT_S,
        )
        if len(self._entries) >= _CACHE_SIZE:
            self._entries.clear()
        self._entries[digest] = (tenant, now)
        return tenant

    def watch(self, token: str, tenant: str) -> TokenWatch:
        """A re-check of `token` for a long-lived answer (an SSE stream) that it opened."""
        return TokenWatch(self, token, tenant)


class TokenWatch:
    """Re-checks one token every half TTL while the stream it opened stays open.

    A check trusts only a cache answer younger than half the TTL, so a token revoked at `t`
    fails a check by `t + ttl_s`: the stream then ends, as REST calls answer 401 by then.
    Streams of one token share the cache: one database read per half TTL for all of them.
    """

    def __init__(self, cache: TokenCache, token: str, tenant: str) -> None:
        self._cache = cache
        self._token = token
        self._tenant = tenant
        self.interval_s = cache.ttl_s / 2
        self._next_check = time.monotonic() + self.interval_s

    def due_in(self) -> float:
        """Seconds until the next check is due (0 when it is due now)."""
        return max(0.0, self._next_check - time.monotonic())

    async def still_valid(self) -> bool:
        """False once the token is revoked (or belongs to another tenant); checks when due.

        Raises the pool's errors when the database cannot be asked.
        """
        now = time.monotonic()
        if now < self._next_check:
            return True
        self._next_check = now + self.interval_s
        tenant = await self._cache.lookup(self._token, max_age_s=self.interval_s)
        return tenant == self._tenant
