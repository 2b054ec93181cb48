"""SQL builders: one parse layer per text format, one convert layer per kind.

A parse layer turns numbered raw lines (``_lines``: line, raw BLOB, pre) into
a relation with ``line``, ``txt`` (the decoded line), ``preason`` (why the line
cannot be read as that format, or NULL) and one VARCHAR column per field
alias the format can carry. A convert layer turns that into the canonical,
typed columns of the kind plus ``reason`` (NULL: load it) and ``rawtext``
(the line cut to 500 characters, kept for rejects only). Everything runs as
bulk SQL; Python only assembles the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from analysis.ingest.bounds import json_bounds_sql
from analysis.ingest.fields import EVENT_KINDS, LEVELS, NUMBER_UNIT_MS, Field, all_aliases
from analysis.ingest.lines import RAW_KEEP
from analysis.ingest.timeparse import go_duration_ms_sql, sql_str, time_sql

#: one CSV field: quoted (with "" escapes) or bare
CSV_FIELD_RE = r'(?:^|,)("(?:[^"]|"")*"|[^,"]*)'
#: one logfmt pair: key=value or key="quoted value"
LOGFMT_RE = r'(?:^|\s)([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)'
LOGFMT_VALUE_RE = r'=("(?:[^"\\]|\\.)*"|[^\s"]*)'
LOGFMT_START_RE = r'^\s*[^\s="]+='
GO_LINE_RE = r"^(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<rest>.*)$"
GO_LEVEL_RE = r"^\[?(?i:(debug|info|warn|warning|error|fatal|panic))\]?:?\s+"
#: where the error starts in a Go log message: a net.OpError, else after a failure phrase
GO_NET_SPLIT_RE = (r"^(?:(.*?): )??((?:dial|read|write|accept|listen|close|lookup)"
                   r" (?:tcp|udp|unix|ip)\S* .*)$")
GO_FAIL_SPLIT_RE = r"^(.*?\b(?:failed|failure|error|cannot|could not|unable)\b[^:]*): (.+)$"


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Col:
    """A value available for one alias: its SQL expression and DuckDB type."""

    expr: str
    type: str = "VARCHAR"


Getter = Callable[[str], Col | None]


def base_lines(source: str = "_lines") -> str:
    """Decode the raw lines: ``line, raw, txt, preason``.

    (``trim`` is avoided on whole lines: it costs microseconds a row in DuckDB 2.)
    """
    return f"""
    SELECT line, raw,
           CASE WHEN ends_with(t, chr(13)) THEN t[:-2] ELSE t END AS txt,
           CASE WHEN pre IS NOT NULL THEN pre
                WHEN t IS NULL THEN 'not valid UTF-8'
                WHEN regexp_matches(t, '^\\s*$') THEN 'blank line' END AS preason
    FROM (SELECT line, raw, pre, CASE WHEN pre IS NULL THEN try(decode(raw)) END AS t
          FROM {source})"""


def _alias_cols(aliases: list[str], value_of: Callable[[str], str]) -> tuple[str, dict[str, Col]]:
    cols = {a: Col(q("a:" + a)) for a in aliases}
    select = ",\n           ".join(f"{value_of(a)} AS {q('a:' + a)}" for a in aliases)
    return select, cols


def parse_jsonl(aliases: list[str]) -> tuple[str, dict[str, Col]]:
    """JSON lines: one object per line; every alias read as text. A line beyond the
    limits of ``bounds`` (nesting, fields) is rejected before it is parsed."""
    struct = sql_str(json.dumps({a: "VARCHAR" for a in aliases}))
    select, cols = _alias_cols(aliases, lambda a: f"j.{q(a)}")
    sql = f"""
    SELECT line, raw, txt,
           coalesce(preason, CASE WHEN j IS NOT NULL THEN NULL
             WHEN starts_with(ltrim(txt), '{{') THEN 'invalid JSON (cut short or malformed)'
             ELSE 'not a JSON object' END) AS preason,
           {select}
    FROM (SELECT *, CASE WHEN preason IS NULL AND starts_with(ltrim(txt), '{{')
                         THEN try(from_json(txt, {struct})) END AS j
          FROM (SELECT line, raw, txt, coalesce(preason, {json_bounds_sql("txt")}) AS preason
                FROM ({base_lines()})))"""
    return sql, cols


def _unquote_logfmt(v: str) -> str:
    return (f"CASE WHEN starts_with({v}, '\"') THEN replace(replace({v}[2:-2], '\\\"', '\"'),"
            f" '\\\\', '\\') ELSE nullif({v}, '') END")


def parse_logfmt(aliases: list[str]) -> tuple[str, dict[str, Col]]:
    """logfmt: ``key=value key="quoted value"`` pairs.

    One search per alias for `` key=`` (a literal prefix RE2 finds fast) beats
    extracting every pair: 4x on 2 cores.
    """
    def value(a: str) -> str:
        pattern = " " + re.escape(a) + LOGFMT_VALUE_RE
        return _unquote_logfmt(f"regexp_extract(s, {sql_str(pattern)}, 1)")

    select, cols = _alias_cols(aliases, value)
    sql = f"""
    SELECT line, raw, txt,
           coalesce(preason, CASE WHEN NOT regexp_matches(txt, '{LOGFMT_START_RE}')
                             THEN 'not logfmt: no key=value pairs' END) AS preason,
           {select}
    FROM (SELECT *, ' ' || coalesce(txt, '') AS s FROM ({base_lines()}))"""
    return sql, cols


def parse_gotext(aliases: list[str]) -> tuple[str, dict[str, Col]]:
    """Go ``log`` text: ``2006/01/02 15:04:05 [LEVEL] message: error``.

    The error starts after the first ``: `` that follows a failure word
    (``memcache: failed to get post cache item: <error>``); failing that, at a
    Go network error (``dial tcp ...``), which is searched for only then (a CASE
    branch runs on its own rows only: half the regex work).
    """
    del aliases  # the format has fixed parts
    sql = f"""
    SELECT line, raw, txt, preason, "a:time", "a:level",
           CASE WHEN f.e <> '' THEN f.m WHEN n.e <> '' THEN nullif(n.m, '') ELSE body END
             AS "a:msg",
           CASE WHEN f.e <> '' THEN f.e WHEN n.e <> '' THEN n.e END AS "a:error"
    FROM (SELECT *, CASE WHEN f.e = '' THEN regexp_extract(body, '{GO_NET_SPLIT_RE}', ['m', 'e'])
                    END AS n
          FROM (SELECT *, regexp_extract(body, '{GO_FAIL_SPLIT_RE}', ['m', 'e']) AS f
                FROM (SELECT line, raw, txt,
                        coalesce(preason, CASE WHEN m.ts = '' THEN 'not a Go log line: expected'
                                 || ' YYYY/MM/DD hh:mm:ss at the start' END) AS preason,
                        nullif(m.ts, '') AS "a:time",
                        lower(nullif(regexp_extract(m.rest, '{GO_LEVEL_RE}', 1), '')) AS "a:level",
                        regexp_replace(m.rest, '{GO_LEVEL_RE}', '') AS body
                      FROM (SELECT *, regexp_extract(coalesce(txt, ''), '{GO_LINE_RE}',
                                                     ['ts', 'rest']) AS m
                            FROM ({base_lines()})))))"""
    cols = {a: Col(q("a:" + a)) for a in ("time", "level", "msg", "error")}
    return sql, cols


def _unquote_csv(v: str) -> str:
    return (f"nullif(CASE WHEN starts_with({v}, '\"') THEN replace({v}[2:-2], '\"\"', '\"')"
            f" ELSE {v} END, '')")


def parse_csv(header: list[str], header_rows: int = 1) -> str:
    """CSV with ``header`` (the first ``header_rows`` lines, not loaded): fields split by
    a regex, quotes undone; column i is ``"c:i"``.

    A row with another number of fields than the header, or a field that does
    not parse (a stray quote), is rejected; quoted newlines are not supported.
    """
    n = len(header)
    select = ",\n           ".join(
        f"{_unquote_csv(f'fl[{i}]')} AS {q(f'c:{i}')}" for i in range(1, n + 1))
    return f"""
    SELECT line, raw, txt,
           coalesce(preason,
             CASE WHEN len(fl) <> {n} THEN 'ragged CSV row: expected {n} fields, got ' || len(fl)
                  WHEN length(txt) <> list_sum(list_transform(fl, lambda x: length(x))) + {n - 1}
                  THEN 'malformed CSV row: stray quote or unterminated quoted field' END)
             AS preason,
           {select}
    FROM (SELECT *, regexp_extract_all(coalesce(txt, ''), '{CSV_FIELD_RE}', 1) AS fl
          FROM ({base_lines()}) WHERE line > {header_rows})"""


# --- convert layers -------------------------------------------------------------


def _present(fields: dict[str, Field], name: str, get: Getter) -> list[tuple[str, Col]]:
    return [(a, c) for a in fields[name].aliases if (c := get(a)) is not None]


def _text(cols: list[tuple[str, Col]]) -> str:
    if not cols:
        return "CAST(NULL AS VARCHAR)"
    exprs = [f"CAST({c.expr} AS VARCHAR)" for _, c in cols]
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _raw(cols: list[tuple[str, Col]]) -> str:
    """The value as given (typed columns left uncast: checks only test it for NULL)."""
    if len({c.type for _, c in cols}) > 1:
        return _text(cols)
    exprs = [c.expr for _, c in cols]
    if not exprs:
        return "CAST(NULL AS VARCHAR)"
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _time(cols: list[tuple[str, Col]], zone: str | None) -> str:
    if not cols:
        return "CAST(NULL AS TIMESTAMP)"
    if all(c.type == "VARCHAR" for _, c in cols):
        return time_sql(_text(cols), zone)
    exprs = [time_sql(c.expr, zone, c.type) for _, c in cols]
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _number(cols: list[tuple[str, Col]]) -> str:
    if not cols:
        return "CAST(NULL AS DOUBLE)"
    exprs = [
        f"try_cast({c.expr} AS DOUBLE)" if c.type == "VARCHAR" else f"CAST({c.expr} AS DOUBLE)"
        for _, c in cols
    ]
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _duration(cols: list[tuple[str, Col]]) -> str:
    if not cols:
        return "CAST(NULL AS DOUBLE)"
    exprs = [go_duration_ms_sql(c.expr, NUMBER_UNIT_MS.get(a, 1.0), c.type) for a, c in cols]
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def _names(fields: dict[str, Field], name: str) -> str:
    return ", ".join(fields[name].aliases[:4])


def _shown(expr: str) -> str:
    return f"'''' || left(CAST({expr} AS VARCHAR), 60) || ''''"


def _convert(typed: dict[str, str], raws: dict[str, str], checks: list[tuple[str, str]],
             source: str) -> str:
    """Common shape: typed values and their raw text, then the first failing check."""
    inner = ",\n           ".join(
        [f"{expr} AS {q(k)}" for k, expr in typed.items()]
        + [f"{expr} AS {q('raw:' + k)}" for k, expr in raws.items()])
    whens = "\n             ".join(f"WHEN {cond} THEN {why}" for cond, why in checks)
    outer = ", ".join(q(k) for k in typed)
    # a row without a text line (Parquet) is shown by its raw field values
    fallback = " || ' ' || ".join(
        f"'{k}=' || coalesce(CAST({q('raw:' + k)} AS VARCHAR), '')" for k in raws)
    return f"""
    SELECT line, {outer}, reason,
           CASE WHEN reason IS NOT NULL
                THEN left(coalesce(txt, CAST(raw AS VARCHAR), {fallback}), {RAW_KEEP}) END
             AS rawtext
    FROM (SELECT *, CASE WHEN preason IS NOT NULL THEN preason
             {whens} END AS reason
          FROM (SELECT line, raw, txt, preason,
           {inner}
                FROM ({source})))"""


def _time_checks(fields: dict[str, Field]) -> list[tuple[str, str]]:
    return [
        ('"raw:time" IS NULL',
         sql_str(f"missing required field time (or {_names(fields, 'time')})")),
        ('"time" IS NULL', f"'unparseable time ' || {_shown(chr(34) + 'raw:time' + chr(34))}"),
    ]


def _number_check(name: str, ok: str, expected: str) -> tuple[str, str]:
    raw = q("raw:" + name)
    return (f"{raw} IS NOT NULL AND NOT coalesce({ok}, false)",
            f"'wrong type: {name} expects {expected}, got ' || {_shown(raw)}")


def convert_requests(source: str, fields: dict[str, Field], get: Getter, zone: str | None) -> str:
    """Requests: time required; uris a whole number; duration a number or Go duration."""
    p = {name: _present(fields, name, get) for name in fields}
    typed = {
        "time": _time(p["time"], zone),
        "method": _text(p["method"]),
        "caller": _text(p["caller"]),
        "uris_d": _number(p["uris"]),
        "status": _text(p["status"]),
        "duration_ms": _duration(p["duration_ms"]),
        "host": _text(p["host"]),
        "dc": _text(p["dc"]),
    }
    raws = {n: _raw(p[n]) for n in ("time", "uris", "duration_ms")}
    checks = _time_checks(fields) + [
        _number_check("uris",
                      '"uris_d" >= 0 AND "uris_d" < 2147483648 AND "uris_d" = trunc("uris_d")',
                      "a whole number >= 0"),
        _number_check("duration_ms", 'isfinite("duration_ms")',
                      "milliseconds or a Go duration like 812.4ms"),
    ]
    return _convert(typed, raws, checks, source)


def convert_errors(source: str, fields: dict[str, Field], get: Getter, zone: str | None) -> str:
    """Service log lines: time required; level normalised; error text kept raw."""
    p = {name: _present(fields, name, get) for name in fields}
    level = _text(p["level"])
    level_map = " ".join(f"WHEN {sql_str(k)} THEN {sql_str(v)}" for k, v in LEVELS.items())
    error = f"nullif(trim({_text(p['error'])}), '')"
    typed = {
        "time": _time(p["time"], zone),
        "level": (f"CASE lower(trim({level})) {level_map} ELSE CASE WHEN {level} IS NULL"
                  f" THEN CASE WHEN {error} IS NULL THEN 'info' ELSE 'error' END"
                  f" ELSE lower(trim({level})) END END"),
        "msg": _text(p["msg"]),
        "host": _text(p["host"]),
        "error": error,
        "sample_rate": f"coalesce({_number(p['sample_rate'])}, 1.0)",
    }
    raws = {n: _raw(p[n]) for n in ("time", "sample_rate")}
    checks = _time_checks(fields) + [
        _number_check("sample_rate", '"sample_rate" > 0 AND "sample_rate" <= 1',
                      "a fraction in (0, 1]"),
    ]
    return _convert(typed, raws, checks, source)


def convert_events(source: str, fields: dict[str, Field], get: Getter, zone: str | None) -> str:
    """Timeline events: time required; end_time optional but must parse; kind defaults to note."""
    p = {name: _present(fields, name, get) for name in fields}
    kind = f"lower(trim({_text(p['kind'])}))"
    typed = {
        "time": _time(p["time"], zone),
        "end_time": _time(p["end_time"], zone),
        "kind": f"coalesce(nullif({kind}, ''), 'note')",
        "title": _text(p["title"]),
        "source": _text(p["source"]),
        "detail": _text(p["detail"]),
    }
    raws = {n: _raw(p[n]) for n in ("time", "end_time")}
    kinds = ", ".join(sql_str(k) for k in EVENT_KINDS)
    checks = _time_checks(fields) + [
        ('"raw:end_time" IS NOT NULL AND "end_time" IS NULL',
         f"'unparseable end_time ' || {_shown(q('raw:end_time'))}"),
        (f'"kind" NOT IN ({kinds})', f"'unknown event kind ' || {_shown(q('kind'))}"
         f" || ', expected one of {', '.join(EVENT_KINDS)}'"),
    ]
    return _convert(typed, raws, checks, source)


def labels_json(pairs: list[tuple[str, str]]) -> str:
    """SQL for canonical labels JSON (sorted keys, empty values dropped) from
    (label name, SQL expression) pairs; '{}' when there are none."""
    if not pairs:
        return "'{}'"
    entries = ", ".join(f"{{'key': {sql_str(k)}, 'value': {v}}}" for k, v in sorted(pairs))
    return (f"CAST(to_json(map_from_entries(list_filter([{entries}],"
            f" lambda e: e.value IS NOT NULL AND e.value <> ''))) AS VARCHAR)")


def prometheus_labels(map_sql: str) -> str:
    """SQL for canonical labels JSON of a Prometheus metric MAP, without ``__name__``."""
    return (f"CAST(to_json(map_from_entries(list_sort(list_filter(map_entries({map_sql}),"
            f" lambda e: e.key <> '__name__' AND e.value <> '')))) AS VARCHAR)")


def canonical_labels(labels: dict[str, str]) -> str:
    """The canonical labels text in Python: the same as ``labels_json`` gives in SQL
    (for printable text; DuckDB writes control characters as upper-case \\u escapes)."""
    items = {k: v for k, v in sorted(labels.items()) if v not in (None, "")}
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def convert_metrics_long(source: str, fields: dict[str, Field], get: Getter, zone: str | None,
                         label_cols: dict[str, Col]) -> str:
    """CSV long form: time, metric, value required; other columns are labels."""
    p = {name: _present(fields, name, get) for name in fields}
    typed = {
        "time": _time(p["time"], zone),
        "metric": f"nullif(trim({_text(p['metric'])}), '')",
        "value": _number(p["value"]),
        "labels": labels_json([(k, c.expr) for k, c in label_cols.items()]),
    }
    raws = {n: _raw(p[n]) for n in ("time", "value")}
    checks = _time_checks(fields) + [
        ('"metric" IS NULL', "'missing required field metric'"),
        ('"raw:value" IS NULL', "'missing required field value'"),
        _number_check("value", '"value" IS NOT NULL', "a number (or NaN)"),
    ]
    return _convert(typed, raws, checks, source)


def convert_metrics_wide(source: str, fields: dict[str, Field], get: Getter, zone: str | None,
                         series: list[Col]) -> str:
    """CSV wide form: time, then one value column per series; empty cells are no sample."""
    p = {"time": _present(fields, "time", get)}
    vals = ", ".join(f"try_cast({c.expr} AS DOUBLE)" for c in series)
    raws_l = ", ".join(c.expr for c in series)
    typed = {"time": _time(p["time"], zone), "vals": f"[{vals}]", "raws": f"[{raws_l}]"}
    raws = {"time": _raw(p["time"])}
    bad = ("list_position(list_transform(list_zip(\"vals\", \"raws\"),"
           " lambda z: z[2] IS NOT NULL AND z[1] IS NULL), true)")
    checks = _time_checks(fields) + [
        (f"coalesce({bad}, 0) > 0",
         f"'wrong type: series column ' || {bad} || ' expects a number (or NaN), got '"
         f" || {_shown(f'raws[{bad}]')}"),
    ]
    return _convert(typed, raws, checks, source)


PARSERS = {"jsonl": parse_jsonl, "logfmt": parse_logfmt, "gotext": parse_gotext}


def aliases_of(fields: dict[str, Field]) -> list[str]:
    """The aliases a self-describing format (JSON, logfmt) is searched for."""
    return all_aliases(fields)
