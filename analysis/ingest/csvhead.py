"""A CSV file's header: how many lines it takes, and what each column is.

Most exports have one header line. pandas writes a frame whose columns are a
``MultiIndex`` with one header line per level (the level's name in the first
cell, or nothing), then a line naming the index (``time,,,``) when it has a
name, then the data::

    entity,cartservice,cartservice,frontend
    metric,cpu,latency,latency
    statistic,mean,p99,p99
    time,,,
    2026-04-06 12:00:00,0.4,212,180

Such a header is read as series names and labels (``wide_series``): the level
named ``metric`` (or ``name``, ``__name__``, ``series``) gives the metric name
and every other level a label of its name; without such a level the metric name
is the column's level values joined by ``_`` and every level is a label
(``level_1``, ...), so nothing is lost. In a one-line wide header, a column
``metric{k="v"}`` carries labels, and a column named ``value`` (or ``val``,
``v``) is the series named after the file (``ec2_request_latency.csv`` with
``time,value`` is the metric ``ec2_request_latency``). Columns whose series
(name and labels) repeat are kept apart by a label ``column`` (their 1-based
position in the file), and the file's report line says so.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from analysis.ingest.fields import KIND_FIELDS, TIME_ALIASES
from analysis.ingest.lines import MAX_LINE, open_decompressed, strip_compression
from analysis.ingest.sql import canonical_labels

#: lines read to find where the data start
HEAD_LINES = 12
#: a first cell that starts a data line: a date, or Unix seconds or milliseconds
TIME_LIKE = re.compile(r"^\s*(?:\d{4}[-/]\d\d?[-/]\d\d?|\d{9,}(?:\.\d*)?\s*$)")
METRIC_LEVELS = KIND_FIELDS["metrics"]["metric"].aliases
VALUE_NAMES = KIND_FIELDS["metrics"]["value"].aliases


@dataclass(frozen=True)
class CsvHeader:
    """The header of a CSV file: ``rows`` lines before the data, the ``columns`` of
    its last line, and for a multi-level header each level's name and its values for
    the columns after the first."""

    rows: int
    columns: list[str]
    levels: list[tuple[str, list[str]]]


def parse_rows(lines: list[str]) -> list[list[str]]:
    """CSV lines (each on its own) as lists of stripped cells."""
    return [[c.strip() for c in next(csv.reader([line]), [])] for line in lines]


def first_lines(path: Path, n: int = HEAD_LINES) -> list[str]:
    """The first ``n`` lines of the file's content, decoded leniently; at most 1 MiB in
    all (a line is cut where that runs out)."""
    out: list[str] = []
    budget = MAX_LINE
    with open_decompressed(path) as f:
        for _ in range(n):
            raw = f.readline(budget)
            if not raw:
                break
            budget -= len(raw)
            out.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    if out:
        out[0] = out[0].lstrip("\ufeff")
    return out


def read_header(rows: list[list[str]]) -> CsvHeader:
    """Where the data start and what the header says, from the first rows.

    Several header lines are taken only in pandas' MultiIndex layout: lines of one
    width, the first not starting with a time column name, before a line starting
    with a time.
    """
    if not rows:
        return CsvHeader(1, [], [])
    width = len(rows[0])
    start = next((i for i, r in enumerate(rows) if r and TIME_LIKE.match(r[0])), None)
    if (start is None or start < 2 or width < 2 or rows[0][0].lower() in TIME_ALIASES
            or any(len(r) != width for r in rows[:start])):
        return CsvHeader(1, rows[0], [])
    levels = rows[:start]
    if levels[-1][0] and not any(levels[-1][1:]):  # the index's name: time,,,
        levels = levels[:-1]
    names = [r[0] or f"level_{j}" for j, r in enumerate(levels, 1)]
    if len(levels) == 1:
        return CsvHeader(start, [rows[start - 1][0] or "time", *levels[0][1:]], [])
    return CsvHeader(start, rows[start - 1], [(n, r[1:]) for n, r in zip(names, levels,
                                                                         strict=True)])


def parse_series_name(column: str) -> tuple[str, dict[str, str]]:
    """A wide CSV column name ``metric{k="v",...}`` -> (metric, labels)."""
    name, brace, rest = column.partition("{")
    labels: dict[str, str] = {}
    if brace:
        body = rest.rstrip().removesuffix("}")
        for part in csv.reader([body], skipinitialspace=True):
            for item in part:
                k, eq, v = item.partition("=")
                if eq:
                    labels[k.strip()] = v.strip().strip('"')
    return name.strip(), labels


def file_stem(path: Path) -> str:
    """The file's name without compression suffix and extension, case kept."""
    name = strip_compression(path.name)
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def wide_series(header: CsvHeader, stem: str) -> tuple[list[tuple[str, dict[str, str]]],
                                                       list[str]]:
    """(metric, labels) of each value column of a wide CSV, and notes for the report."""
    notes: list[str] = []
    if header.levels:
        names = [n for n, _ in header.levels]
        at = next((j for j, n in enumerate(names) if n.lower() in METRIC_LEVELS), None)
        series = []
        for i in range(len(header.columns) - 1):
            vals = [(n, v[i]) for n, v in header.levels]
            if at is None:
                series.append(("_".join(v for _, v in vals if v), dict(vals)))
            else:
                series.append((vals[at][1], {n: v for j, (n, v) in enumerate(vals) if j != at}))
        how = (f"metric from level {names[at]!r}, labels from the others" if at is not None
               else "no level named metric: metric = the levels joined by _, each a label")
        notes.append(f"{len(names)}-level header ({', '.join(names)}): {how}")
    else:
        series = [parse_series_name(h) for h in header.columns[1:]]
        for i, (m, lb) in enumerate(series):
            if m.lower() in VALUE_NAMES:
                series[i] = (stem, lb)
                notes.append(f"column {m!r} is the series {stem!r} (named after the file)")
    keys = [(m, canonical_labels(lb)) for m, lb in series]
    repeated = {k for k, n in Counter(keys).items() if n > 1}
    if repeated:
        at = [i for i, k in enumerate(keys, 2) if k in repeated]
        series = [(m, {**lb, "column": str(i)} if key in repeated else lb)
                  for i, ((m, lb), key) in enumerate(zip(series, keys, strict=True), 2)]
        names = ", ".join(repr(m) for m in sorted({m for m, _ in repeated}))
        notes.append(f"{len(at)} columns repeat a series name ({names[:120]}): kept apart"
                     f" by a label column=N, their position (columns"
                     f" {', '.join(map(str, at[:20]))}{', ...' if len(at) > 20 else ''})")
    return series, notes
