"""What both sources share: the time window, secrets, an HTTP client that retries,
and the pull manifest that accounts for every chunk.

A pull is a list of chunks (one request's worth: a query over a time slice, or
a page of logs). Each chunk ends ``ok`` (its file is written) or ``failed``
(with the error); the manifest lists them all, so nothing is lost silently.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from analysis.errors import UserError
from analysis.ingest.manifest import PULL_MANIFEST_NAME
from analysis.ingest.timeparse import parse_flag_time

#: HTTP statuses worth another try: rate limited, or the server (or a proxy) in trouble
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$")
_EPOCH = dt.datetime(1970, 1, 1)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, None: 1000}


def parse_time_ms(value: str, what: str) -> int:
    """``--start``/``--end``: RFC 3339 (``Z`` or an offset; no zone means UTC) or Unix
    seconds, as Unix milliseconds."""
    return (parse_flag_time(value, what) - _EPOCH) // dt.timedelta(milliseconds=1)


def parse_duration_ms(value: str, what: str) -> int:
    """A Prometheus-style duration (``15s``, ``1m``, ``500ms``, a bare number of seconds)
    in milliseconds, > 0."""
    m = _DURATION.match(value.strip())
    if not m:
        raise UserError(f"{what} {value!r} is not a duration; expected e.g. 1s, 15s, 1m, 500ms")
    ms = round(float(m[1]) * _UNIT_MS[m[2]])
    if ms <= 0:
        raise UserError(f"{what} {value!r} must be positive")
    return ms


def iso_ms(ms: int) -> str:
    """Unix milliseconds as RFC 3339 UTC (``2026-04-06T12:00:00Z``, milliseconds if any)."""
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


@dataclass(frozen=True)
class Window:
    """The time range to pull, in Unix milliseconds, ``start <= end``."""

    start_ms: int
    end_ms: int

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        """From the ``--start``/``--end`` texts; an empty or reversed range is a UserError."""
        w = cls(parse_time_ms(start, "--start"), parse_time_ms(end, "--end"))
        if w.end_ms <= w.start_ms:
            raise UserError(f"--end {end} is not after --start {start}; expected a time range")
        return w

    def text(self) -> str:
        """``START..END`` in RFC 3339, for messages."""
        return f"{iso_ms(self.start_ms)}..{iso_ms(self.end_ms)}"


# --- secrets and auth ------------------------------------------------------------


def read_secret(env: str | None, file: Path | None, what: str) -> str | None:
    """A secret from an environment variable or a file (one trailing newline dropped),
    never from the command line; None when neither is given."""
    if env and file:
        raise UserError(f"{what}: give the environment variable or the file, not both")
    if env:
        value = os.environ.get(env)
        if not value:
            raise UserError(f"{what}: environment variable {env} is not set or empty")
        return value
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{file}: cannot read the {what} ({exc})") from exc
        if not value:
            raise UserError(f"{file}: the {what} file is empty")
        return value
    return None


@dataclass(frozen=True)
class Auth:
    """How to authenticate: basic (user and password) or a bearer token, or neither."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if self.token and self.user:
            raise UserError("give basic auth (--basic-auth-user) or a bearer token, not both")
        if self.user and self.password is None:
            raise UserError("--basic-auth-user needs --password-env VAR or --password-file FILE")
        if self.password is not None and not self.user:
            raise UserError("a password was given without --basic-auth-user")

    def __repr__(self) -> str:  # never print a secret
        kind = "bearer" if self.token else "basic" if self.user else "none"
        return f"Auth({kind})"

    def apply(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client``."""
        if self.token:
            return {"headers": {"Authorization": f"Bearer {self.token}"}}
        if self.user:
            return {"auth": httpx.BasicAuth(self.user, self.password or "")}
        return {}


# --- HTTP with retries -----------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """Bounded retries with exponential back-off: ``attempts`` tries in all, waiting
    ``base_s * 2**i`` (at most ``cap_s``, or the server's ``Retry-After``) between them.
    ``sleep`` is injectable so that tests do not wait for real."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, i: int, response: httpx.Response | None) -> float:
        """The wait before try ``i + 2``."""
        after = response.headers.get("Retry-After") if response is not None else None
        if after is not None:
            try:
                return min(float(after), self.cap_s)
            except ValueError:
                pass
        return min(self.base_s * 2**i, self.cap_s)


class RequestFailed(Exception):
    """A request that failed for good: its one-line reason and how many tries it took."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass
class Fetched:
    """A successful response: the raw body, its JSON and the tries it took."""

    body: bytes
    doc: dict[str, Any]
    attempts: int


def api_error(response: httpx.Response) -> str:
    """A one-line reason from an API error response: Prometheus and Loki send
    ``{"status":"error","errorType":...,"error":...}`` (Loki may send plain text)."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("status") == "error":
        kind = doc.get("errorType") or "error"
        return f"{kind}: {' '.join(str(doc.get('error', '')).split())}"
    text = " ".join(response.text.split())[:300]
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


def fetch_json(client: httpx.Client, method: Literal["GET", "POST"], path: str,
               params: dict[str, str], retry: Retry) -> Fetched:
    """One API call, retried on 429, 5xx and connection errors; a JSON body with
    ``status: success`` or ``RequestFailed`` with a one-line reason."""
    for i in range(retry.attempts):
        response = None
        try:
            if method == "POST":
                response = client.post(path, data=params)
            else:
                response = client.get(path, params=params)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'}"
        else:
            if response.status_code == 200:
                try:
                    doc = response.json()
                except ValueError:
                    raise RequestFailed("the response is not JSON: "
                                        + " ".join(response.text.split())[:200], i + 1) from None
                if not isinstance(doc, dict) or doc.get("status") != "success":
                    raise RequestFailed(api_error(response), i + 1)
                return Fetched(response.content, doc, i + 1)
            reason = api_error(response)
            if response.status_code not in RETRY_STATUSES:
                raise RequestFailed(reason, i + 1)
        if i + 1 < retry.attempts:
            retry.sleep(retry.delay(i, response))
    raise RequestFailed(f"{reason} (after {retry.attempts} tries)", retry.attempts)


def make_client(url: str, auth: Auth, timeout_s: float,
                transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An ``httpx.Client`` on ``url`` (its path kept as a prefix, for servers behind a
    proxy path); ``transport`` replaces the network in tests."""
    if not re.match(r"^https?://", url):
        raise UserError(f"--url {url!r}: expected an http:// or https:// URL")
    return httpx.Client(base_url=url.rstrip("/") + "/", timeout=timeout_s, transport=transport,
                        follow_redirects=True, **auth.apply())


# --- the manifest ----------------------------------------------------------------


@dataclass
class Chunk:
    """One request's worth of a pull and how it ended."""

    query: str
    start: str
    end: str
    status: Literal["ok", "failed"]
    file: str | None = None
    series: int = 0
    samples: int = 0
    attempts: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class PullManifest:
    """What a pull asked for and got: source, URL, window, queries and every chunk."""

    source: Literal["prometheus", "loki"]
    url: str
    start: str
    end: str
    queries: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    pulled_at: str = ""

    @property
    def failed(self) -> list[Chunk]:
        """The chunks that failed after their retries."""
        return [c for c in self.chunks if c.status == "failed"]

    def write(self, out: Path) -> Path:
        """Write ``pull-manifest.json`` into ``out`` (ingest skips it)."""
        path = out / PULL_MANIFEST_NAME
        doc = asdict(self)
        doc["ok"] = len(self.chunks) - len(self.failed)
        doc["failed"] = len(self.failed)
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def check(self, out: Path) -> None:
        """A ``UserError`` naming the first failed chunk's query and range, if any failed."""
        bad = self.failed
        if bad:
            c = bad[0]
            more = f" ({len(bad)} of {len(self.chunks)} chunks failed)" if len(bad) > 1 else ""
            raise UserError(f"pull from {self.url} failed for query {c.query!r} {c.start}..{c.end}:"
                            f" {c.error}{more}; see {out / PULL_MANIFEST_NAME}")


def prepare_out(out: Path) -> None:
    """Create the output directory; one that already holds a pull is refused, so the
    evidence a pull froze is never overwritten."""
    if (out / PULL_MANIFEST_NAME).exists():
        raise UserError(f"{out}: already holds a pull ({PULL_MANIFEST_NAME}); expected a new"
                        " or empty --out directory (the evidence is kept as it was pulled)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output directory ({exc.strerror})") from exc


def now_iso() -> str:
    """The current UTC time, RFC 3339 to the second (when the evidence was pulled)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_slug(text: str, index: int) -> str:
    """A file-name part from a query: its word characters (Unicode kept), cut short,
    made unique by the query's position."""
    words = "_".join(w for w in re.findall(r"\w+", text) if w != "__name__")[:60] or "query"
    return f"{index:03d}-{words}"
