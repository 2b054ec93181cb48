"""Detection over the store: every signal's windows (written to tables ``anomalies`` and
``too_short``) and the raw samples behind each metric signal."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from analysis.detection.contracts import AnomalyWindow, Detection, DetectorSettings, windows_frame
from analysis.detection.detector import detect_series
from analysis.rollups import rollup_info, signal_parts


def detect_all(
    con: duckdb.DuckDBPyConnection,
    settings: DetectorSettings | None = None,
    *,
    signals: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Windows of every signal in the ``signals`` table; also written to table ``anomalies``,
    and the signals too short for a baseline to table ``too_short`` (signal, samples,
    needed, reason).

    Count signals (catalog kind ``count``) get the Poisson scale floor. The
    frame has the ``AnomalyWindow`` fields plus ``duration_s``, ordered by start.
    """
    settings = settings or DetectorSettings()
    kinds = dict(con.execute("SELECT signal, kind FROM signal_catalog").fetchall())
    wanted = None if signals is None else [s for s in signals if s in kinds]
    windows: list[AnomalyWindow] = []
    short: list[Detection] = []
    raw = raw_samples(con)
    for name, part in signal_parts(con, wanted):
        found = detect_series(part, settings, signal=name, counts=kinds.get(name) == "count",
                              samples=raw.get(name))
        windows += found.windows
        short += [found] if found.too_short else []
    frame = windows_frame(windows).sort("start", "signal")
    notes = pl.DataFrame(
        [(d.signal, d.samples, d.needed, d.reason) for d in short],
        schema={"signal": pl.String, "samples": pl.Int64, "needed": pl.Int64,
                "reason": pl.String}, orient="row",
    )
    for table, data in (("anomalies", frame), ("too_short", notes)):
        con.register("_detect_view", data)
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _detect_view")
        con.unregister("_detect_view")
    return frame


def raw_samples(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Raw samples behind each metric signal on the grid (``roll_info``'s buckets): a label
    set's own count; an aggregate over label sets, that of its best-sampled set. Empty
    without ``roll_info``. ``detect_all`` and the chain pass them to ``detect_series``."""
    info = rollup_info(con)
    if info is None or info.start is None or info.end is None:
        return {}
    # the raw samples per series inside the grid, as the rollups counted them
    rows = con.execute("""
        SELECT c.signal, max(s.samples) FROM signal_catalog c
        JOIN roll_series s ON s.metric = c.metric AND (c.labels IS NULL OR s.labels = c.labels)
        WHERE c.source = 'metrics' GROUP BY c.signal
    """).fetchall()
    return {str(k): int(v) for k, v in rows}
