"""The limits a line must keep to be read, in one place: length, nesting depth, fields.

A line beyond a limit is a reject with its line number and the limit in words,
never an exception: Python's ``json`` recurses (10,000 nested brackets raise
``RecursionError``), and a CSV header of a million columns would become a
million-column SQL statement. The limits are checked where they are cheap:

* on the line path (SQL, every line): ``json_bounds_sql`` screens a line by its
  count of ``{`` and ``[`` and its length, and measures only the few that could
  break a limit;
* on the fast paths (DuckDB's readers, which read deep lines fine): ``line_stats``
  applies the same screen, vectorised, and hands the lines over it to the line
  path, which decides;
* when sniffing the first lines in Python: ``json_object``.
"""

from __future__ import annotations

import json
import re

from analysis.ingest.lines import MAX_LINE

#: nesting deeper than this rejects a JSON line
MAX_DEPTH = 64
#: more top-level fields (JSON keys, CSV columns) than this rejects a line or a header
MAX_FIELDS = 10_000
#: the screen: a line with more ``{``/``[`` than this may nest too deep, and a line
#: longer than this may have too many fields (each takes 5 bytes at least: ``"k":0,``)
SCREEN_OPENERS = MAX_DEPTH
SCREEN_LENGTH = 5 * MAX_FIELDS
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
TOO_WIDE = f"more than {MAX_FIELDS:,} fields"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
_PAIR = re.compile(r"\[\]|\{\}")


def too_deep(text: str) -> bool:
    """Whether a JSON text nests deeper than ``MAX_DEPTH`` (brackets in strings not
    counted): it has more ``{``/``[`` than that, and brackets are left after its
    innermost pairs are stripped ``MAX_DEPTH`` times. (A text with that many brackets
    that leaves any unclosed counts as too deep: it is no JSON either way.) The same
    rule as the SQL."""
    if text.count("{") + text.count("[") <= SCREEN_OPENERS:
        return False
    bare = "".join(_BRACKETS.findall(_STRING.sub("", text)))
    for _ in range(MAX_DEPTH):
        if not bare:
            return False
        bare = _PAIR.sub("", bare)
    return bare != ""


def json_limit(text: str) -> str | None:
    """Which limit a JSON line breaks (in words), or None: the rule of the SQL."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_LINE:
        return f"line longer than {MAX_LINE} bytes"
    if text.count("{") + text.count("[") <= SCREEN_OPENERS and len(text) <= SCREEN_LENGTH:
        return None
    if too_deep(text):
        return TOO_DEEP
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return TOO_WIDE if isinstance(obj, dict) and len(obj) > MAX_FIELDS else None


def json_object(text: str) -> dict | None:
    """The line as a JSON object, or None if it is not one or breaks a limit (for
    sniffing first lines, where one line must never stop the run)."""
    if json_limit(text) is not None:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or len(obj) > MAX_FIELDS:
        return None
    return obj


def json_bounds_sql(txt: str) -> str:
    """SQL: the limit the JSON line ``txt`` breaks (in words), or NULL.

    Lines within the screen cost two ``replace`` and three ``length`` calls; the
    others have their strings removed and their innermost bracket pairs stripped
    ``MAX_DEPTH`` times (brackets left mean deeper), and their keys counted.
    """
    screen = (f"length({txt}) - length(replace(replace({txt}, '{{', ''), '[', ''))"
              f" > {SCREEN_OPENERS} OR length({txt}) > {SCREEN_LENGTH}")
    bare = (f"regexp_replace(regexp_replace({txt}, '\"(?:[^\"\\\\]|\\\\.)*\"', '', 'g'),"
            f" '[^\\[\\]{{}}]', '', 'g')")
    for _ in range(MAX_DEPTH):
        bare = f"regexp_replace({bare}, '\\[\\]|\\{{\\}}', '', 'g')"
    return (f"CASE WHEN {screen} THEN CASE"
            f" WHEN {bare} <> '' THEN '{TOO_DEEP}'"
            f" WHEN json_valid({txt}) AND json_type({txt}) = 'OBJECT'"
            f" AND len(json_keys({txt})) > {MAX_FIELDS} THEN '{TOO_WIDE}' END END")
