"""Pull: fetch an incident's evidence from where it lives, as files ingest reads.

``postmortem pull prometheus`` writes ``query_range`` JSON (``prometheus``);
``postmortem pull loki`` writes JSON lines (``loki``). Both keep a
``pull-manifest.json`` beside the files: the source, the queries, the window and
every chunk (query x time slice, or page) with its status, so that the evidence
is frozen as pulled and no gap goes unnoticed. Pull sits before ingest in the
data flow and imports nothing downstream of it.
"""

from analysis.pull.common import Auth, Chunk, PullManifest, Retry, Window, read_secret
from analysis.pull.loki import LokiPull, pull_loki
from analysis.pull.prometheus import CHAIN_METRICS, MAX_POINTS, PromPull, pull_prometheus

__all__ = [
    "CHAIN_METRICS",
    "MAX_POINTS",
    "Auth",
    "Chunk",
    "LokiPull",
    "PromPull",
    "PullManifest",
    "Retry",
    "Window",
    "pull_loki",
    "pull_prometheus",
    "read_secret",
]
