"""``postmortem pull prometheus|loki``: fetch an incident's metrics or logs from the
server that holds them into files ``ingest`` reads, with a manifest of every chunk.

Only arguments live here; the sources' logic is in ``analysis.pull``. Secrets
come from an environment variable or a file, never from the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.pull import (
    MAX_POINTS,
    Auth,
    LokiPull,
    PromPull,
    PullManifest,
    Retry,
    Window,
    pull_loki,
    pull_prometheus,
    read_secret,
)
from analysis.pull.common import parse_duration_ms
from analysis.pull.loki import DEFAULT_LIMIT


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the server's base URL, e.g. http://prom:9090")
    p.add_argument("--start", required=True, help="RFC 3339 (2026-04-06T12:00:00Z) or Unix s")
    p.add_argument("--end", required=True, help="RFC 3339 or Unix seconds")
    p.add_argument("--out", type=Path, required=True,
                   help="directory for the files and pull-manifest.json (new or empty)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds per request (default 60)")
    p.add_argument("--retries", type=int, default=5, metavar="N",
                   help="tries per request on 429, 5xx or a connection error (default 5)")
    a = p.add_argument_group("authentication (secrets from the environment or a file only)")
    a.add_argument("--basic-auth-user", metavar="USER", help="basic-auth user name")
    a.add_argument("--password-env", metavar="VAR", help="environment variable holding the"
                   " basic-auth password")
    a.add_argument("--password-file", type=Path, metavar="FILE",
                   help="file holding the basic-auth password")
    a.add_argument("--bearer-token-env", metavar="VAR",
                   help="environment variable holding a bearer token")
    a.add_argument("--bearer-token-file", type=Path, metavar="FILE",
                   help="file holding a bearer token")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="fetch metrics from Prometheus or logs from Loki into files",
                       description="Fetch an incident's evidence from where it lives into files"
                       " `postmortem ingest` reads, with a manifest of every chunk pulled.")
    src = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    prom = src.add_parser(
        "prometheus", help="range queries from a Prometheus-compatible API",
        description="Pull series as query_range JSON: the --match selectors and --query"
        " expressions, plus every metric the chain needs (TIME_WAIT, dials, connections,"
        " goroutines and threads, request rates, memcached stats, ...) present in the window."
        f" Long ranges are split so that no request asks for more than {MAX_POINTS:,} points"
        " per series.")
    _common(prom)
    prom.add_argument("--step", default="15s",
                      help="resolution, e.g. 1s, 15s (default 15s; best: the scrape interval)")
    prom.add_argument("--match", action="append", default=[], metavar="SELECTOR",
                      help='a series selector, e.g. \'{__name__=~"node_.*"}\' (repeatable)')
    prom.add_argument("--query", action="append", default=[], metavar="PROMQL",
                      help="a PromQL expression (repeatable); unnamed results are named by it")
    prom.add_argument("--no-builtin", dest="builtin", action="store_false",
                      help="pull only --match and --query, not the chain's built-in list")
    prom.set_defaults(func=run_prometheus)
    loki = src.add_parser(
        "loki", help="log lines from Loki's query_range",
        description="Page through a LogQL log query (oldest first) into JSON lines that"
        " ingest reads, keeping each stream's labels as fields.")
    _common(loki)
    loki.add_argument("--query", required=True, metavar="LOGQL",
                      help='a log query, e.g. \'{app="dataplane"} |= "error"\'')
    loki.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                      help=f"entries per page (default {DEFAULT_LIMIT}, Loki's usual maximum)")
    loki.add_argument("--kind", choices=("errors", "requests"), default="errors",
                      help="what the lines are: the service's log (default) or an access log")
    loki.set_defaults(func=run_loki)


def _auth(args: argparse.Namespace) -> Auth:
    return Auth(
        user=args.basic_auth_user,
        password=read_secret(args.password_env, args.password_file, "password"),
        token=read_secret(args.bearer_token_env, args.bearer_token_file, "bearer token"),
    )


def _retry(args: argparse.Namespace) -> Retry:
    return Retry(attempts=max(1, args.retries))


def _finish(manifest: PullManifest, out: Path) -> int:
    ok = [c for c in manifest.chunks if c.status == "ok"]
    files = sorted({c.file for c in ok if c.file})
    print(f"pulled {len(ok)} of {len(manifest.chunks)} chunks from {manifest.url}"
          f" ({manifest.start}..{manifest.end}): {len(manifest.queries)} queries,"
          f" {sum(c.series for c in ok):,} series, {sum(c.samples for c in ok):,}"
          f" {'entries' if manifest.source == 'loki' else 'samples'} in {len(files)} files"
          f" under {out}")
    warned = [c for c in ok if c.warnings]
    if warned:
        print(f"{len(warned)} chunks came with warnings from the server (first: {warned[0].query!r}"
              f" {warned[0].start}..{warned[0].end}: {warned[0].warnings[0]}); see"
              f" {out / 'pull-manifest.json'}")
    manifest.check(out)
    return 0


def run_prometheus(args: argparse.Namespace) -> int:
    req = PromPull(args.url, Window.parse(args.start, args.end),
                   parse_duration_ms(args.step, "--step"), tuple(args.match),
                   tuple(args.query), args.builtin, _auth(args), _retry(args), args.timeout)
    return _finish(pull_prometheus(req, args.out), args.out)


def run_loki(args: argparse.Namespace) -> int:
    req = LokiPull(args.url, args.query, Window.parse(args.start, args.end), args.limit,
                   args.kind, _auth(args), _retry(args), args.timeout)
    return _finish(pull_loki(req, args.out), args.out)
