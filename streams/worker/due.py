"""An index of when table keys next need a tick, kept in a table of its own.

Keys are filed in minute buckets per partition (`"<partition>:<minute>"` -> JSON list of
keys) with a per-partition cursor (`"<partition>:cursor"`): an event files its key under
its own partition (a table's changes go to the changelog partition of the record being
decided), and a tick for partition p drains p's buckets from the cursor up to now. A
due time already behind the cursor is filed under the cursor's bucket, so nothing is
skipped; the current minute's bucket is kept until the minute is over.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

# Due times are filed in buckets of this many seconds, so one tick reads few keys.
BUCKET_S = 60

# (key, now_s) -> the key's next due time after handling it, or None.
DueHandler = Callable[[bytes, int], Awaitable[int | None]]


class DueIndex:
    def __init__(self, table: Any) -> None:
        self.table = table

    def add(self, partition: int, key: bytes, due_s: int | None) -> None:
        if due_s is None:
            return
        cursor_key = f"{partition}:cursor".encode()
        raw_cursor = self.table.get(cursor_key)
        bucket = due_s // BUCKET_S
        if raw_cursor is None:
            self.table[cursor_key] = str(bucket).encode()
        else:
            bucket = max(bucket, int(raw_cursor))
        bucket_key = f"{partition}:{bucket}".encode()
        members = json.loads(self.table.get(bucket_key) or b"[]")
        if key.decode() not in members:
            self.table[bucket_key] = json.dumps([*members, key.decode()]).encode()

    async def drain(self, partition: int, now_s: int, handle: DueHandler) -> None:
        """Call `handle` for every key filed under `partition` up to the current minute,
        and file each again under the due time it returns."""
        cursor_key = f"{partition}:cursor".encode()
        raw_cursor = self.table.get(cursor_key)
        if raw_cursor is None:
            return  # nothing was ever filed on this partition
        cursor, current = int(raw_cursor), now_s // BUCKET_S
        # Move the cursor first: a key that is due again files under the current bucket,
        # which is kept (and read again) until its minute is over.
        self.table[cursor_key] = str(max(cursor, current)).encode()
        for bucket in range(cursor, current + 1):
            bucket_key = f"{partition}:{bucket}".encode()
            members = json.loads(self.table.get(bucket_key) or b"[]")
            if bucket < current and members:
                del self.table[bucket_key]
            for member in members:
                key = member.encode()
                self.add(partition, key, await handle(key, now_s))
