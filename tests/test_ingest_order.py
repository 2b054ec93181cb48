"""Line numbers on the parallel fast paths.

DuckDB reads a big JSON-lines or CSV file on every core; the fast paths number
each loaded row by the order the rows were inserted in (``number_rows``), not by
a window over the scan. These files are large enough to be split between
threads, and every row carries its own line number in a field, so any row
numbered out of order shows. Bad and blank lines, skipped by the reader or
re-read by the line path, must not shift the numbers of the rows after them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.ingest import ingest_paths
from analysis.store import connect

N = 120_000  # ~20 MB of JSON: several read buffers, so both threads take part
BAD = {1_001: "{not json", 50_002: '{"time":"yesterday"}', 99_999: ""}


def _json_line(n: int) -> str:
    return (f'{{"time":"2026-04-06T14:{n // 60 % 60:02d}:{n % 60:02d}.5Z",'
            f'"method":"GetPostRecord","caller":"c{n % 7}","uris":{n},"status":"ok",'
            f'"duration_ms":{n % 97}.5,"host":"dp-{n % 8}","dc":"us-east","pad":"{"x" * 60}"}}')


def _csv_line(n: int) -> str:
    return (f"2026-04-06T14:{n // 60 % 60:02d}:{n % 60:02d}.5Z,GetPostRecord,c{n % 7},{n},ok,"
            f"{n % 97}.5,dp-{n % 8},us-east")


def _write(path: Path, header: str | None, line, bad: dict[int, str]) -> Path:
    """Line ``n`` (1-based, the header counted) is ``line(n)``, or ``bad[n]``."""
    first = 1 if header is None else 2
    rows = [] if header is None else [header]
    rows += [bad[n] if n in bad else line(n) for n in range(first, N + first)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _ingest(path: Path):
    con = connect(None)
    con.execute("SET threads = 2")
    return con, ingest_paths(con, [path]).files[0]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_every_loaded_row_keeps_its_own_line_number(tmp_path, fmt):
    if fmt == "jsonl":
        path = _write(tmp_path / "requests.jsonl", None, _json_line, BAD)
    else:
        bad = {k: v for k, v in BAD.items() if v != ""} | {77_777: "too,few,cells"}
        path = _write(tmp_path / "requests.csv",
                      "time,method,caller,uris,status,duration_ms,host,dc", _csv_line, bad)
    con, f = _ingest(path)
    assert "line by line" not in f.note, f.note  # stayed on DuckDB's parallel reader
    n_bad = len(BAD) if fmt == "jsonl" else len(bad)
    assert (f.lines_read, f.loaded, f.rejected) == (N, N - n_bad, n_bad)
    misnumbered = con.execute(
        "SELECT count(*) FILTER (WHERE line <> uris), count(DISTINCT line) FROM requests"
    ).fetchall()[0]
    assert misnumbered == (0, N - n_bad)
    rejected = sorted(r[0] for r in con.execute("SELECT line FROM rejects").fetchall())
    assert rejected == sorted(BAD if fmt == "jsonl" else bad)


def test_a_second_file_is_numbered_from_its_own_first_line(tmp_path):
    """Also on a connection whose owner turned insertion order off (ingest turns it on)."""
    a = _write(tmp_path / "a.jsonl", None, _json_line, {})
    b = _write(tmp_path / "b.jsonl", None, lambda n: _json_line(n).replace("c", "d", 1), BAD)
    con = connect(None)
    con.execute("SET preserve_insertion_order = false")
    ingest_paths(con, [a, b])
    per_file = con.execute(
        "SELECT file_id, count(*), count(*) FILTER (WHERE line <> uris), min(line), max(line)"
        " FROM requests GROUP BY file_id ORDER BY file_id").fetchall()
    assert per_file == [(1, N, 0, 1, N), (2, N - len(BAD), 0, 1, N)]
