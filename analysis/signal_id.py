"""What a signal is, as a structure: names are data, never syntax.

Every series of the ``signals`` table belongs to one *family* and is about one
*subject* that comes from the data (a caller, an errno class, a cache, an
operation, a metric name), possibly with a metric's label set. Callers are
``host:port`` strings, SPIFFE ids, or anything a user's logs hold: newlines,
quotes, braces, ESC, right-to-left overrides, emoji. So nothing downstream may
learn a subject by cutting a signal's name at a ``:`` or a ``{``. The analysis
reads these fields from ``SignalId`` (and ``signal_catalog``'s columns), and the
name, ``SignalId.key``, is only a label: a canonical text for one identity.

The key stays as readable as the data allow: a part made only of letters,
digits and ``_ - . / @ + ~ #`` is written as it is (``caller:feed-indexer:uris``,
``metric:go_threads{dc=us-east}``); any other part is written as a JSON string
(``caller:"feed:indexer":uris``). So keys are injective, and ``SignalId.parse``
is the exact inverse of ``key`` (a property test checks both over arbitrary
Unicode). ``printable`` shows any text with its control and format characters
escaped, for terminals and chart labels; HTML escaping is the report's own job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

Family = Literal["caller", "errors", "metric"]
CallerMeasure = Literal["requests", "uris", "max_uris", "errors", "p99_ms"]
ErrorMeasure = Literal["total", "errno", "cache", "op"]

CALLER_MEASURES: tuple[str, ...] = ("requests", "uris", "max_uris", "errors", "p99_ms")
ERROR_MEASURES: tuple[str, ...] = ("total", "errno", "cache", "op")
_ERROR_PREFIX = {"errno": "", "cache": "cache:", "op": "op:"}

_BARE = re.compile(r"[^\W]|[-./@+~#]")  # one character a bare (unquoted) part may hold


def quote(part: str) -> str:
    """``part`` as it is when every character is plain, else as a JSON string."""
    if part and part not in ("total", "cache", "op") and all(_BARE.match(c) for c in part):
        return part
    return json.dumps(part, ensure_ascii=False)


@dataclass(frozen=True, order=True)
class SignalId:
    """One signal's identity.

    ``measure`` says what is measured: for a caller one of ``CALLER_MEASURES``; for
    errors ``total`` (every error line), ``errno`` (one errno class), ``cache`` or
    ``op`` (one cache, one operation); for a metric ``value``. ``subject`` is the
    caller, errno class, cache, operation or metric name (None for ``errors``
    ``total``). ``labels`` is a metric's label set as sorted ``(name, value)``
    pairs; empty for the aggregate over label sets and for the other families.
    """

    family: Family
    measure: str
    subject: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_caller(cls, caller: str, measure: CallerMeasure) -> SignalId:
        return cls("caller", measure, caller)

    @classmethod
    def for_errors(cls, measure: ErrorMeasure, subject: str | None = None) -> SignalId:
        return cls("errors", measure, None if measure == "total" else subject)

    @classmethod
    def for_metric(cls, metric: str, labels: dict[str, str] | None = None) -> SignalId:
        return cls("metric", "value", metric, tuple(sorted((labels or {}).items())))

    @property
    def caller(self) -> str | None:
        """The caller this signal is about, if it is a caller's."""
        return self.subject if self.family == "caller" else None

    @property
    def metric(self) -> str | None:
        """The metric name, if this is a metric's signal."""
        return self.subject if self.family == "metric" else None

    @property
    def errno_class(self) -> str | None:
        """The errno class, if this is one errno class's error rate."""
        return self.subject if self.family == "errors" and self.measure == "errno" else None

    @property
    def aggregate(self) -> SignalId:
        """The signal over every label set of this one's metric (itself otherwise)."""
        return SignalId(self.family, self.measure, self.subject) if self.labels else self

    @property
    def key(self) -> str:
        """The canonical name (the ``signal`` column): injective, and parsed back exactly."""
        if self.family == "caller":
            return f"caller:{quote(self.subject or '')}:{self.measure}"
        if self.family == "errors":
            if self.measure == "total":
                return "errors:total"
            return f"errors:{_ERROR_PREFIX[self.measure]}{quote(self.subject or '')}"
        labels = ",".join(f"{quote(k)}={quote(v)}" for k, v in self.labels)
        return f"metric:{quote(self.subject or '')}" + (f"{{{labels}}}" if self.labels else "")

    def label(self) -> str:
        """A short human label (the subject, with a metric's labels), control characters
        escaped: for legends and terminals."""
        if self.family == "errors" and self.measure == "total":
            return "all errors"
        text = self.subject or ""
        if self.labels:
            text += "{" + ",".join(f"{k}={v}" for k, v in self.labels) + "}"
        return printable(text)

    @classmethod
    def parse(cls, key: str) -> SignalId:
        """The identity whose ``key`` is ``key``; ValueError for any other text."""
        return _Parser(key).signal()


class _Parser:
    """A reader of keys: bare parts up to a delimiter, or one JSON string."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"not a signal key ({what} at {self.i}): {self.text!r}")

    def take(self, literal: str) -> bool:
        if self.text.startswith(literal, self.i):
            self.i += len(literal)
            return True
        return False

    def part(self) -> str:
        if self.text.startswith('"', self.i):
            try:
                value, end = json.JSONDecoder().raw_decode(self.text, self.i)
            except json.JSONDecodeError as exc:
                raise self.fail("bad quoted part") from exc
            if not isinstance(value, str):
                raise self.fail("quoted part is not a string")
            self.i = end
            return value
        j = self.i
        while j < len(self.text) and _BARE.match(self.text[j]):
            j += 1
        if j == self.i:
            raise self.fail("empty part")
        value, self.i = self.text[self.i:j], j
        return value

    def end(self) -> None:
        if self.i != len(self.text):
            raise self.fail("trailing text")

    def signal(self) -> SignalId:
        if self.take("caller:"):
            caller = self.part()
            if not self.take(":"):
                raise self.fail("expected ':' before the measure")
            measure = self.part()
            if measure not in CALLER_MEASURES:
                raise self.fail(f"unknown caller measure {measure!r}")
            self.end()
            return SignalId("caller", measure, caller)
        if self.take("errors:"):
            if self.text[self.i:] == "total":
                self.i = len(self.text)
                return SignalId("errors", "total")
            measure = "cache" if self.take("cache:") else "op" if self.take("op:") else "errno"
            subject = self.part()
            self.end()
            return SignalId("errors", measure, subject)
        if self.take("metric:"):
            metric = self.part()
            labels: list[tuple[str, str]] = []
            if self.take("{"):
                while True:
                    name = self.part()
                    if not self.take("="):
                        raise self.fail("expected '=' in a label")
                    labels.append((name, self.part()))
                    if self.take("}"):
                        break
                    if not self.take(","):
                        raise self.fail("expected ',' or '}' in labels")
            self.end()
            if labels != sorted(labels) or len({k for k, _ in labels}) != len(labels):
                raise self.fail("labels not sorted and unique")
            return SignalId("metric", "value", metric, tuple(labels))
        raise self.fail("unknown family")


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """``text`` with every character that is not printable (control characters, format
    characters such as the right-to-left override, line and paragraph separators)
    shown as an escape (``\\n``, ``\\x1b``, ``\\u202e``), so that a name cannot move the
    cursor, recolour a terminal or reorder a line. Printable text is unchanged."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        elif c in _NAMED:
            out.append(_NAMED[c])
        else:
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000
                       else f"\\U{o:08x}")
    return "".join(out)
