"""API tokens: created once, stored hashed, each scoped to one tenant; lookups cached briefly."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

import asyncpg

TOKEN_PREFIX = "rmt_"
_CACHE_TTL_S = 30.0  # a revoked token stops working within this
_CACHE_SIZE = 10_000


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


class TokenCache:
    """Resolves tokens to tenants, remembering answers for a short while.

    Every API call and SSE connection authenticates; without the cache each would cost a
    database round trip.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._entries: dict[bytes, tuple[str | None, float]] = {}

    async def lookup(self, token: str) -> str | None:
        """The tenant of a valid, unrevoked token, or None."""
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        tenant: str | None = await self._pool.fetchval(
            "UPDATE runs.api_tokens SET last_used_at = now()"
            " WHERE token_sha256 = $1 AND revoked_at IS NULL RETURNING tenant",
            digest,
        )
        if len(self._entries) >= _CACHE_SIZE:
            self._entries.clear()
        self._entries[digest] = (tenant, now + _CACHE_TTL_S)
        return tenant
