"""The incident's environment: the facts the port-exhaustion mechanism depends on.

Port range, TIME_WAIT and idle pool, from the ``incident`` table (the manifest) or
kernel defaults. The what-if replay (``analysis.whatif``) reads them from here
without importing the chain's stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

KERNEL_PORT_RANGE = (32768, 60999)
KERNEL_TIME_WAIT_S = 60
UNKNOWN_POOL_CAP = 200


@dataclass(frozen=True)
class Environment:
    """Facts the mechanism depends on, from the ``incident`` table or kernel defaults."""

    port_range: tuple[int, int] = KERNEL_PORT_RANGE
    time_wait_s: int = KERNEL_TIME_WAIT_S
    idle_pool: int | None = None
    from_manifest: tuple[str, ...] = ()

    @property
    def ports(self) -> int:
        """Ports one source address can use."""
        return self.port_range[1] - self.port_range[0] + 1


def environment(con: duckdb.DuckDBPyConnection) -> Environment:
    """Port range, TIME_WAIT and idle pool from the ``incident`` table (kernel defaults)."""
    try:
        rows = dict(con.execute("SELECT key, value FROM incident").fetchall())
    except duckdb.Error:
        rows = {}
    found: list[str] = []
    port_range = KERNEL_PORT_RANGE
    raw = rows.get("ephemeral_port_range")
    if raw:
        lo, _, hi = str(raw).replace(" ", "-").partition("-")
        try:
            port_range = (int(lo), int(hi))
            found.append("ephemeral_port_range")
        except ValueError:
            pass
    tw = KERNEL_TIME_WAIT_S
    if rows.get("time_wait_s"):
        tw = int(float(rows["time_wait_s"]))
        found.append("time_wait_s")
    pool = None
    if rows.get("idle_pool"):
        pool = int(float(rows["idle_pool"]))
        found.append("idle_pool")
    return Environment(port_range, tw, pool, tuple(found))
