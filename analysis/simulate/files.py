"""Write a simulated world as the raw files an incident's exports would be.

Every file follows ``/work/shared/formats.md`` and goes through the ordinary
ingest: request logs (slog JSON lines, one host with aliased field names and
Unix-millisecond times, CSV, Parquet), the service's own log (JSON lines,
logfmt, Go ``log`` text; floods of failed cache operations sampled at
``sample_rate``, rare lines kept whole; Go text carries no rate, so only hosts
outside the failing DC write it),
metrics (Prometheus range-query JSON, CSV long, CSV wide), the humans'
timeline (YAML, CSV alerts) and an ``incident.toml`` manifest.

Rows are drawn vectorised from the world's per-second arrays (numpy) and
serialised by polars; compression is deterministic (gzip with ``mtime=0`` and
no file name, zstd without a timestamp), so the same seed gives the same bytes.
A few corrupt lines are injected into line-based files (never into the first
ten lines, which format detection reads) and counted per file.

Layout of an output directory::

    incident.toml                      name, window, zone, environment facts
    truth.json                         ground truth (ingest skips it)
    requests/requests-<host>.<fmt>     jsonl.gz | jsonl.zst | csv.gz | parquet
    logs/dataplane-<host>.log.<gz|zst> JSON lines | logfmt | Go log text
    metrics/prom-<metric>.json         Prometheus query_range responses
    metrics/metrics-memory.csv         CSV long: process_resident_memory_bytes
    metrics/metrics-transit-loss.csv   CSV wide: transit_packet_loss_ratio{src,dst}
    events/events.yaml                 the humans' timeline
    events/events-alerts.csv           crash-loop alerts
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import yaml
import zstandard

from analysis.simulate.scenario import Scenario
from analysis.simulate.world import World

CACHE_MSGS = (
    "failed to get post cache item",
    "failed to set post cache item",
    "failed to get user cache item",
    "failed to get interaction counts cache item",
    "failed to set profile cache item",
)
CACHE_WEIGHTS = np.array([0.42, 0.18, 0.18, 0.14, 0.08])
FIXED_SOURCE = "127.32.0.1"
MEMCACHED = "127.0.0.1:11211"
ISO_US = "%Y-%m-%dT%H:%M:%S%.6fZ"


@dataclass
class Written:
    """What the writers produced: relative paths, rows and corrupt lines per file."""

    rows: dict[str, int] = field(default_factory=dict)
    corrupt: dict[str, int] = field(default_factory=dict)

    def add(self, rel: str, rows: int, corrupt: int = 0) -> None:
        self.rows[rel] = rows
        if corrupt:
            self.corrupt[rel] = corrupt


# --- bytes -------------------------------------------------------------------


def compress(data: bytes, suffix: str) -> bytes:
    """``data`` compressed for a file ending in ``suffix`` (deterministic bytes)."""
    if suffix == ".gz":
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=1) as f:
            f.write(data)
        return buf.getvalue()
    if suffix == ".zst":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def write_bytes(out: Path, rel: str, data: bytes) -> None:
    """Write ``data`` to ``out/rel``, compressed by the name's suffix."""
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compress(data, path.suffix))


def inject(body: bytes, bad: list[bytes], rng: np.random.Generator) -> bytes:
    """``body`` (newline-terminated lines) with the ``bad`` lines inserted at random line
    boundaries after the first ten lines (which format detection reads)."""
    if not bad:
        return body
    start = 0
    for _ in range(10):
        nxt = body.find(b"\n", start)
        if nxt < 0:
            break
        start = nxt + 1
    if start == 0:  # nothing to keep clear of
        return body + b"".join(line + b"\n" for line in bad)
    offsets = np.sort(rng.integers(start, max(start + 1, len(body)), len(bad))).tolist()
    parts: list[bytes] = []
    prev = 0
    for o, line in zip(offsets, bad, strict=True):
        cut = body.find(b"\n", o - 1) + 1  # the start of the line holding byte o
        parts += [body[prev:cut], line, b"\n"]
        prev = cut
    parts.append(body[prev:])
    return b"".join(parts)


def last_line(body: bytes) -> bytes:
    """The last line of a newline-terminated ``body`` (without its newline)."""
    return body[body.rfind(b"\n", 0, len(body) - 1) + 1:].rstrip(b"\n")


def corrupt_lines(kind: str, sample: bytes, n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` corrupt lines for a file of ``kind`` (json | logfmt | gotext | csv).

    Kinds of damage: a line cut short, an unparseable time, binary junk
    (bytes that are not UTF-8).
    """
    out = []
    for i in range(n):
        damage = ("cut", "time", "junk")[(i + int(rng.integers(0, 3))) % 3]
        if damage == "junk":
            out.append(b"\xff\xfe\x00\x9c\x81garbage \xc3\x28 " + bytes(rng.integers(128, 256, 12)
                                                                       .astype(np.uint8)))
        elif damage == "cut" and kind == "json":
            out.append(sample[: max(5, len(sample) // 2)])
        elif kind == "json":
            out.append(b'{"time":"2026-13-45T99:99:99Z","level":"ERROR","msg":"clock glitch"}')
        elif kind == "logfmt":
            out.append(b'time=yesterday-ish level=error msg="failed to get post cache item"')
        elif kind == "gotext":
            out.append(b"2026/04/06 25:61:99 memcache: failed to get post cache item: EOF")
        else:  # csv
            out.append(b"not-a-time," + sample.split(b",", 1)[-1])
    return out


def lines_of(df: pl.DataFrame, fmt: str) -> bytes:
    """Serialise ``df`` as newline-terminated lines: ndjson, csv (with header) or, for a
    one-column frame of ready-made lines, ``text``."""
    if fmt == "text":
        return (df.to_series().str.join("\n").item() + "\n").encode() if df.height else b""
    buf = io.BytesIO()
    if fmt == "json":
        df.write_ndjson(buf)
    else:
        df.write_csv(buf)
    return buf.getvalue()


# --- time ----------------------------------------------------------------------


def epoch_us(sc: Scenario) -> int:
    """The window's start as Unix microseconds."""
    return int(sc.start.timestamp()) * 1_000_000


def times_us(sc: Scenario, sec: np.ndarray, rng: np.random.Generator,
             skew_s: np.ndarray | float = 0.0) -> np.ndarray:
    """Unix microseconds of events in second ``sec`` (uniform in the second, plus skew)."""
    frac = rng.integers(0, 1_000_000, sec.size)
    return epoch_us(sc) + sec.astype(np.int64) * 1_000_000 + frac + np.round(
        np.asarray(skew_s) * 1e6).astype(np.int64)


def iso(col: pl.Expr, fmt: str = ISO_US) -> pl.Expr:
    """A Unix-microsecond column as an RFC 3339 UTC string."""
    return pl.from_epoch(col, time_unit="us").dt.strftime(fmt)


def labels(values: list[str], codes: np.ndarray) -> pl.Series:
    """``values[codes]`` as a polars string column (fast: no numpy unicode arrays)."""
    return pl.Series(values, dtype=pl.String).gather(np.asarray(codes, dtype=np.int64))


# --- requests ------------------------------------------------------------------


def request_rows(w: World, rng: np.random.Generator) -> pl.DataFrame:
    """Every request of the window (small ones drawn from rates, big ones from the world)."""
    sc = w.scenario
    n = w.n_seconds
    t = np.arange(n)
    dcs = sc.dcs
    host_dc = np.array([dcs.index(h.dc) for h in sc.hosts])
    members = [np.flatnonzero(host_dc == d) for d in range(len(dcs))]
    parts = []
    for ci, c in enumerate(sc.callers):
        lam = np.full(n, c.rate * sc.scale / len(c.dcs))
        if c.follows_curve:
            lam = lam * w.curve
        if c.active is not None:
            lam = np.where((t >= c.active[0]) & (t < c.active[1]), lam, 0.0)
        if c.spike is not None:
            a, b, f = c.spike
            lam = np.where((t >= a) & (t < b), lam * f, lam)
        for dc in c.dcs:
            counts = rng.poisson(lam)
            sec = np.repeat(t, counts)
            lo, hi = np.log(c.uris_lo), np.log(c.uris_hi + 1)
            uris = np.floor(np.exp(rng.uniform(lo, hi, sec.size))).astype(np.int64)
            uris = np.clip(uris, c.uris_lo, c.uris_hi)
            parts.append((sec, np.full(sec.size, ci), np.full(sec.size, dcs.index(dc)), uris))
    sec, caller, dc, uris = (np.concatenate(x) for x in zip(*parts, strict=True))
    # route each request to an up host of its DC (the load balancer skips dead pods)
    host = np.zeros(sec.size, np.int64)
    unavailable = np.zeros(sec.size, bool)
    pick = rng.random(sec.size)
    for d, m in enumerate(members):
        sel = np.flatnonzero(dc == d)
        up = w.up[:, m]
        order = np.argsort(~up, axis=1, kind="stable")
        n_up = up.sum(axis=1)
        s = sec[sel]
        k = np.where(n_up[s] > 0, n_up[s], m.size)
        idx = np.minimum((pick[sel] * k).astype(np.int64), k - 1)
        host[sel] = m[order[s, idx]]
        unavailable[sel] = n_up[s] == 0
    timeout = ~unavailable & (rng.random(sec.size) < w.timeout_frac[sec, host])
    status = np.where(unavailable, 1, np.where(timeout, 2, 0))
    b = w.batches
    sec = np.concatenate([sec, b.second])
    caller = np.concatenate([caller, b.caller])
    dc = np.concatenate([dc, b.dc])
    host = np.concatenate([host, b.host])
    uris = np.concatenate([uris, b.uris])
    status = np.concatenate([status, b.status])
    # rare ordinary errors
    status = np.where((status == 0) & (rng.random(sec.size) < 0.0005), 3, status)
    lookups = np.maximum(w.pool["lookups"][sec, host], 1.0)
    fail = w.pool["failed_lookups"][sec, host] / lookups
    stall = np.nan_to_num(w.stall[sec, host], nan=1.0)
    dur = (1.5 + 0.045 * uris) * stall * (1 + 3 * fail) * rng.lognormal(0, 0.3, sec.size)
    dur = np.where(status == 2, 5000 + rng.uniform(0, 50, sec.size), dur)
    dur = np.where(status == 1, rng.uniform(0.2, 2.0, sec.size), dur)
    skew = np.array([h.skew_s for h in sc.hosts])[host]
    return pl.DataFrame({
        "us": times_us(sc, sec, rng, skew),
        "method": labels([c.method for c in sc.callers], caller),
        "caller": labels([c.name for c in sc.callers], caller),
        "uris": uris,
        "status": labels(["ok", "Unavailable", "DeadlineExceeded", "Internal"], status),
        "duration_ms": np.round(dur, 1),
        "host": labels([h.name for h in sc.hosts], host),
        "dc": labels(list(dcs), dc),
    }).sort("us", maintain_order=True)


def write_requests(out: Path, w: World, rng: np.random.Generator, acc: Written) -> int:
    """One request-log file per host, in the host's format; returns the rows written."""
    sc = w.scenario
    df = request_rows(w, rng)
    lo, hi = sc.corrupt_per_file
    for h in sc.hosts:
        part = df.filter(pl.col("host") == h.name)
        fmt = h.requests_format
        if fmt == "parquet":
            rel = f"requests/requests-{h.name}.parquet"
            table = part.select(pl.from_epoch("us", time_unit="us").dt.replace_time_zone("UTC")
                                .alias("time"), pl.exclude("us"))
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            table.write_parquet(out / rel, statistics=False)
            acc.add(rel, part.height)
            continue
        if fmt == "jsonl-alias.gz":
            rel = f"requests/requests-{h.name}.jsonl.gz"
            frame = part.select(
                (pl.col("us") // 1000).alias("ts"), pl.lit("INFO").alias("level"),
                pl.lit("rpc").alias("msg"), "method", pl.col("caller").alias("peer_service"),
                pl.col("uris").alias("batch_size"), "status",
                (pl.col("duration_ms").cast(pl.String) + "ms").alias("duration"), "host", "dc")
            kind = "json"
        elif fmt == "csv.gz":
            rel = f"requests/requests-{h.name}.csv.gz"
            frame = part.select(iso(pl.col("us")).alias("time"), pl.exclude("us"))
            kind = "csv"
        else:
            rel = f"requests/requests-{h.name}.{fmt}"
            frame = part.select(iso(pl.col("us")).alias("time"), pl.lit("INFO").alias("level"),
                                pl.lit("rpc").alias("msg"), pl.exclude("us"))
            kind = "json"
        body = lines_of(frame, kind)
        k = int(rng.integers(lo, hi + 1))
        body = inject(body, corrupt_lines(kind, last_line(body), k, rng), rng)
        write_bytes(out, rel, body)
        acc.add(rel, part.height, k)
    return df.height


# --- the service's own log -------------------------------------------------------


def _uri_pool(rng: np.random.Generator) -> list[str]:
    """4,096 post URIs (at://did:plc:.../app.bsky.feed.post/...) for log lines to name."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz234567"))
    did = ["".join(x) for x in alphabet[rng.integers(0, 32, (64, 24))]]
    rkey = ["3k" + "".join(x) for x in alphabet[rng.integers(0, 32, (4096, 11))]]
    return [f"at://did:plc:{did[i % 64]}/app.bsky.feed.post/{r}" for i, r in enumerate(rkey)]


def log_rows(w: World, h: int, rng: np.random.Generator) -> pl.DataFrame:
    """The log lines of host ``h``: sampled cache failures, timeouts, noise, start-ups."""
    sc = w.scenario
    n = w.n_seconds
    t = np.arange(n)
    rate = sc.sample_rate
    n_fail = rng.poisson(w.error_lines[:, h] * rate)
    n_tout = rng.poisson(w.timeout_lines[:, h] * rate)
    n_noise = rng.poisson(np.where(w.up[:, h], 0.0015, 0.0))
    sec_f = np.repeat(t, n_fail)
    sec_t = np.repeat(t, n_tout)
    sec_n = np.repeat(t, n_noise)
    src = np.where(w.source_addr == "fixed", FIXED_SOURCE, "127.0.0.1")
    port = rng.integers(32768, 61000, sec_t.size + sec_n.size).astype(str)
    by_errno = {"EADDRINUSE": f"dial tcp {FIXED_SOURCE}:0->{MEMCACHED}: bind: address already"
                              " in use",
                "EADDRNOTAVAIL": f"dial tcp {MEMCACHED}: connect: cannot assign requested"
                                 " address", "": "memcache: no servers configured or available"}
    err_f = np.array([by_errno[e] for e in w.errno.tolist()]) if sec_f.size else np.array([])
    err_f = err_f[sec_f] if sec_f.size else np.array([], dtype=str)
    err_t = np.char.add(np.char.add(np.char.add("read tcp ", src[sec_t]),
                                    np.char.add(":", port[: sec_t.size])),
                        f"->{MEMCACHED}: i/o timeout")
    noise_txt = np.array([f"read tcp 127.0.0.1:{{}}->{MEMCACHED}: read: connection reset by"
                          " peer", "EOF"])
    err_n = noise_txt[rng.integers(0, 2, sec_n.size)]
    err_n = np.array([e.format(p) for e, p in zip(err_n, port[sec_t.size:], strict=True)],
                     dtype=str) if sec_n.size else np.array([], dtype=str)
    sec = np.concatenate([sec_f, sec_t, sec_n])
    err = np.concatenate([err_f.astype(str), err_t.astype(str), err_n.astype(str)])
    msg = labels(list(CACHE_MSGS), rng.choice(len(CACHE_MSGS), sec.size, p=CACHE_WEIGHTS))
    starts = [s for s, hh in w.starts if hh == h]
    s_sec = np.array(starts, dtype=np.int64)
    skew = sc.hosts[h].skew_s
    # Like zap's sampler, only floods are sampled: rare lines are kept whole (rate 1).
    sampled = np.r_[np.full(sec_f.size + sec_t.size, rate), np.ones(sec_n.size)]
    errors = pl.DataFrame({
        "us": times_us(sc, sec, rng, skew), "level": "ERROR", "msg": msg,
        "uri": labels(_uri_pool(rng), rng.integers(0, 4096, sec.size)), "error": err,
        "sample_rate": sampled,
    })
    infos = pl.DataFrame({
        "us": times_us(sc, s_sec, rng, skew), "level": "INFO",
        "msg": np.full(s_sec.size, "starting dataplane"), "uri": np.full(s_sec.size, None),
        "error": np.full(s_sec.size, None), "sample_rate": np.ones(s_sec.size),
    }, schema=errors.schema)
    return pl.concat([errors, infos]).sort("us")


def write_logs(out: Path, w: World, rng: np.random.Generator, acc: Written) -> int:
    """One service-log file per host, in the host's log format; returns lines written."""
    sc = w.scenario
    total = 0
    lo, hi = sc.corrupt_per_file
    for h, host in enumerate(sc.hosts):
        df = log_rows(w, h, rng)
        fmt = host.log_format
        rel = f"logs/dataplane-{host.name}.log" + (".gz" if h % 2 == 0 else ".zst")
        if fmt == "json":
            frame = df.select(iso(pl.col("us")).alias("time"), "level", "msg", "uri", "error",
                              pl.lit(host.name).alias("host"),
                              "sample_rate")
            body = lines_of(frame, "json")
        elif fmt == "logfmt":
            q = '"'
            frame = df.select(
                pl.concat_str([
                    pl.lit("time="), iso(pl.col("us"), "%Y-%m-%dT%H:%M:%S%.3fZ"),
                    pl.lit(" level="), pl.col("level").str.to_lowercase(),
                    pl.lit(' msg="'), pl.col("msg"), pl.lit(q),
                    pl.when(pl.col("uri").is_not_null()).then(pl.lit(" uri=") + pl.col("uri"))
                    .otherwise(pl.lit("")),
                    pl.when(pl.col("error").is_not_null())
                    .then(pl.lit(' error="') + pl.col("error") + pl.lit(q)).otherwise(pl.lit("")),
                    pl.lit(f" host={host.name} sample_rate="),
                    pl.col("sample_rate").cast(pl.String),
                ]).alias("line"))
            body = lines_of(frame, "text")
        else:  # Go log text: second resolution, zone-less (the manifest says UTC)
            frame = df.select(pl.concat_str([
                iso(pl.col("us"), "%Y/%m/%d %H:%M:%S"), pl.lit(" "),
                pl.when(pl.col("error").is_not_null())
                .then(pl.lit("memcache: ") + pl.col("msg") + pl.lit(": ") + pl.col("error"))
                .otherwise(pl.col("msg")),
            ]).alias("line"))
            body = lines_of(frame, "text")
        k = int(rng.integers(lo, hi + 1)) if df.height > 20 else 0
        body = inject(body, corrupt_lines(fmt, last_line(body), k, rng), rng)
        write_bytes(out, rel, body)
        acc.add(rel, df.height, k)
        total += df.height
    return total


# --- metrics ---------------------------------------------------------------------


def _prom(name: str, series: list[tuple[dict[str, str], list]], unix: np.ndarray) -> bytes:
    """A Prometheus ``query_range`` response; ``None`` samples (scrape gaps) are left out."""
    ts = unix.tolist()
    result = [
        {"metric": {"__name__": name, **labels},
         "values": [[t, "NaN" if v != v else repr(float(v))]
                    for t, v in zip(ts, values, strict=True) if v is not None]}
        for labels, values in series
    ]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    return json.dumps(body, separators=(",", ":")).encode()


def write_metrics(out: Path, w: World, rng: np.random.Generator, acc: Written) -> int:
    """Metric series sampled every ``metric_step_s``; returns the samples written."""
    sc = w.scenario
    step = sc.metric_step_s
    idx = np.arange(0, w.n_seconds, step)
    unix = int(sc.start.timestamp()) + idx
    hosts = [h.name for h in sc.hosts]
    up = w.up[idx]
    n_samples = 0

    def masked(name: str, values: np.ndarray, h: int, process: bool = True) -> list:
        """Samples of host ``h``: absent in a scrape gap and, for the process's own
        metrics, while the pod is down."""
        keep = up[:, h].copy() if process else np.ones(idx.size, bool)
        for metric, host, a, b in sc.gaps:
            if metric == name and host == hosts[h]:
                keep &= ~((idx >= a) & (idx < b))
        return [v if k else None for v, k in zip(values.tolist(), keep.tolist(), strict=True)]

    per_host: dict[str, tuple[dict[str, str], Callable[[int], np.ndarray], bool]] = {
        "node_sockstat_TCP_tw": ({"job": "node"}, lambda h: w.pool["time_wait"][idx, h], False),
        "go_threads": ({"job": "dataplane"}, lambda h: np.round(w.threads[idx, h]), True),
        "go_goroutines": ({"job": "dataplane"}, lambda h: np.round(w.goroutines[idx, h]), True),
        "memcached_current_connections": ({"job": "memcached"},
                                          lambda h: w.pool["open_conns"][idx, h], False),
        "memcached_connections_total": ({"job": "memcached"}, lambda h: 5000 + np.cumsum(
            w.pool["dials"][:, h] - w.pool["failed_dials"][:, h])[idx], False),
        "kube_pod_container_status_restarts_total": (
            {"job": "kube-state-metrics", "namespace": "dataplane", "container": "dataplane"},
            lambda h: w.restarts[idx, h], False),
    }
    for name, (labels, values, process) in per_host.items():
        series = []
        for h, host in enumerate(hosts):
            lab = {**labels, "instance": host, "dc": sc.hosts[h].dc}
            if name.startswith("kube_"):
                lab = {**labels, "pod": f"dataplane-{host}", "dc": sc.hosts[h].dc}
            series.append((lab, masked(name, values(h).astype(np.float64), h, process)))
        rel = f"metrics/prom-{name}.json"
        write_bytes(out, rel, _prom(name, series, unix))
        n = sum(sum(x is not None for x in s) for _, s in series)
        acc.add(rel, n)
        n_samples += n
    # GC pause summary: quantile 0.5 and 1; NaN right after a start (no GC yet)
    gc_series = []
    for h, host in enumerate(hosts):
        v = w.gc_pause_s[idx, h]
        fresh = np.zeros(idx.size + 1, bool)
        fresh[np.searchsorted(idx, [s for s, hh in w.starts if hh == h])] = True
        fresh = fresh[:-1]
        for q, f in (("0.5", 0.4), ("1", 1.0)):
            vals = np.where(fresh, np.nan, v * f)
            gc_series.append(({"job": "dataplane", "instance": host, "quantile": q},
                              masked("go_gc_duration_seconds", vals, h)))
    rel = "metrics/prom-go_gc_duration_seconds.json"
    write_bytes(out, rel, _prom("go_gc_duration_seconds", gc_series, unix))
    n = sum(sum(x is not None for x in s) for _, s in gc_series)
    acc.add(rel, n)
    n_samples += n
    # user-facing traffic per DC
    user = [({"job": "appview", "dc": d}, np.round(w.user_rps[idx, i], 1).tolist())
            for i, d in enumerate(sc.dcs)]
    rel = "metrics/prom-appview.json"
    write_bytes(out, rel, _prom("appview_requests_per_second", user, unix))
    acc.add(rel, idx.size * len(sc.dcs))
    n_samples += idx.size * len(sc.dcs)
    # memory: CSV long form
    mem = pl.concat([pl.DataFrame({
        "us": unix.astype(np.int64) * 1_000_000, "metric": "process_resident_memory_bytes",
        "value": np.round(w.mem_mb[idx, h] * 1048576), "instance": host, "dc": sc.hosts[h].dc,
    }).filter(pl.Series(up[:, h])) for h, host in enumerate(hosts)])
    mem = mem.sort(["us", "instance"]).select(iso(pl.col("us"), "%Y-%m-%dT%H:%M:%SZ")
                                              .alias("time"), pl.exclude("us"))
    body = lines_of(mem, "csv")
    k = int(rng.integers(*sc.corrupt_per_file)) if mem.height > 20 else 0
    body = inject(body, corrupt_lines("csv", last_line(body), k, rng), rng)
    rel = "metrics/metrics-memory.csv"
    write_bytes(out, rel, body)
    acc.add(rel, mem.height, k)
    n_samples += mem.height
    # the rival: packet loss from a cloud provider, CSV wide form
    loss = {}
    base = 0.0008 + 0.0004 * rng.random((idx.size, len(sc.dcs)))
    for i, d in enumerate(sc.dcs):
        v = base[:, i].copy()
        for r in sc.rivals:
            if r.kind == "packet_loss" and r.dc == d:
                for a, b in r.episodes:
                    on = (idx >= a) & (idx < b)
                    v[on] = r.value * (0.7 + 0.6 * rng.random(int(on.sum())))
        loss[f'transit_packet_loss_ratio{{src="cloud-x",dst="{d}"}}'] = np.round(v, 5)
    wide = pl.DataFrame({"time": unix.astype(np.int64), **loss})
    rel = "metrics/metrics-transit-loss.csv"
    write_bytes(out, rel, lines_of(wide, "csv"))
    acc.add(rel, wide.height * len(sc.dcs))
    return n_samples + wide.height * len(sc.dcs)


# --- events and manifest ---------------------------------------------------------


def _iso_s(d) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_events(out: Path, w: World, acc: Written) -> None:
    """The humans' timeline (YAML) and the crash-loop alerts (CSV)."""
    sc = w.scenario
    events = []
    for e in sc.events:
        item = {"time": _iso_s(e.time), "kind": e.kind, "title": e.title}
        if e.end_time:
            item["end_time"] = _iso_s(e.end_time)
        if e.source:
            item["source"] = e.source
        if e.detail:
            item["detail"] = e.detail
        events.append(item)
    rel = "events/events.yaml"
    write_bytes(out, rel, yaml.safe_dump(events, sort_keys=False, allow_unicode=True).encode())
    acc.add(rel, len(events))
    # alerts: a crash-loop alert when a host restarts after >= 10 min without a restart
    rows = []
    for h, host in enumerate(h.name for h in sc.hosts):
        r = w.restarts[:, h]
        jumps = np.flatnonzero(np.diff(r) > 0) + 1
        last = -10**9
        for j in jumps.tolist():
            if j - last >= 600 and r[j] >= 2:
                rows.append((j, f"KubePodCrashLooping dataplane-{host}"))
            last = j
    rows.sort()
    alerts = pl.DataFrame({
        "time": [_iso_s(sc.at(j)) for j, _ in rows],
        "kind": ["alert"] * len(rows),
        "title": [t for _, t in rows],
        "source": ["alertmanager"] * len(rows),
    }, schema={"time": pl.String, "kind": pl.String, "title": pl.String, "source": pl.String})
    rel = "events/events-alerts.csv"
    write_bytes(out, rel, lines_of(alerts, "csv"))
    acc.add(rel, alerts.height)


def write_manifest(out: Path, sc: Scenario) -> None:
    """``incident.toml``: name, window, zone of zone-less logs, environment facts."""
    lo, hi = sc.pool.port_range
    gotext = [h.name for h in sc.hosts if h.log_format == "gotext"]
    lines = [
        f'name = "{sc.name}"',
        'timezone = "UTC"',
        f'ephemeral_port_range = "{lo}-{hi}"',
        f"time_wait_s = {sc.pool.time_wait_s}",
        f"idle_pool = {sc.pool.idle_pool}",
        f"sample_rate = {sc.sample_rate}",
        f'source_addresses = "{sc.pool.source_addresses}"',
        f'memcached = "{MEMCACHED}"',
        "",
        "[window]",
        f'start = "{_iso_s(sc.start)}"',
        f'end = "{_iso_s(sc.end)}"',
    ]
    for host in gotext:
        lines += ["", "[[files]]", f'glob = "logs/dataplane-{host}.log*"', 'kind = "errors"',
                  'format = "gotext"']
    (out / "incident.toml").write_text("\n".join(lines) + "\n")
