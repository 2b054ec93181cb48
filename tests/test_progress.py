"""Progress on long work: one live line on a terminal, nothing anywhere else.

The line (``analysis.progress``) shows counts, a percentage and an ETA, is cleared
when the work ends, and is never drawn on a pipe, a log or CI, where the counts are
still kept. ``ingest`` counts the files' bytes on disk: a compressed file counts its
compressed size, whichever reader read it.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil

import duckdb
import pytest
import zstandard
from tqdm import tqdm

from analysis.ingest import ingest_paths
from analysis.ingest.lines import LineReader
from analysis.paths import repo_root
from analysis.progress import progress_line, shown_on

SAMPLES = repo_root() / "data" / "samples"


class Terminal(io.StringIO):
    """What a progress line draws on a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch) -> Terminal:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    return Terminal()


def test_on_a_terminal_one_line_with_counts_percentage_and_eta_then_cleared(terminal) -> None:
    with progress_line("simulate", total=4, unit="step", stream=terminal) as bar:
        for stage in ("world", "requests", "logs", "metrics"):
            bar.note(stage)
            bar.advance()
    drawn = terminal.getvalue()
    assert "\n" not in drawn  # redrawn in place, never a new line
    frames = [f for f in drawn.split("\r") if f.strip()]
    assert re.search(r"simulate: +0%.*0/4 \[\d\d:\d\d<\?", frames[0])  # no ETA yet
    assert re.search(r"simulate: 100%.*4/4 \[\d\d:\d\d<\d\d:\d\d.*metrics", frames[-1])
    assert drawn.endswith("\r") and not drawn.split("\r")[-2].strip()  # cleared at the end
    assert bar.done == 4 and bar.note_text == "metrics"


def test_bytes_are_shown_in_kb_mb_gb(terminal) -> None:
    with progress_line("ingest", total=2_500_000, unit="B", stream=terminal) as bar:
        bar.reach(2_500_000)
    assert "2.50MB/2.50MB" in terminal.getvalue()


def test_nothing_is_drawn_off_a_terminal_yet_the_counts_are_kept(monkeypatch) -> None:
    pipe = io.StringIO()
    with progress_line("report", total=7, unit="notebook", stream=pipe) as bar:
        bar.advance(3)
        bar.reach(2)  # never moves back
        bar.reach(7)
    assert pipe.getvalue() == "" and bar.done == 7
    monkeypatch.setenv("CI", "true")
    assert not shown_on(Terminal())
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TERM", "dumb")
    assert not shown_on(Terminal())


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_the_line_reader_counts_bytes_read_from_disk(tmp_path, suffix) -> None:
    body = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 50)) for i in range(20_000))
    path = tmp_path / f"r.jsonl{suffix}"
    packed = {"": lambda b: b, ".gz": gzip.compress,
              ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}[suffix](body)
    path.write_bytes(packed)
    reader = LineReader(path, group_bytes=1 << 16)
    assert sum(t.num_rows for t in reader) == 20_000
    assert reader.disk_bytes == path.stat().st_size
    assert reader.bytes_in == len(body)
    if suffix:
        assert reader.disk_bytes < reader.bytes_in / 3


def test_ingest_counts_compressed_files_by_their_size_on_disk(tmp_path, terminal,
                                                              monkeypatch) -> None:
    """Each file tells the ingest's line how many of its bytes were read from disk: a
    .gz read by DuckDB, a .gz read line by line and a plain file each end at its size
    on disk, not at their decompressed size (no more "0 MB read" for a compressed
    file); the line ends at the sum of the sizes."""
    from analysis.ingest.load import FileProgress

    logfmt = tmp_path / "errors.logfmt.gz"  # logfmt: read line by line
    logfmt.write_bytes(gzip.compress((SAMPLES / "dataplane" / "errors.logfmt").read_bytes() * 300))
    files = [SAMPLES / "requests-gz.jsonl.gz", logfmt, SAMPLES / "dataplane" / "errors.jsonl"]
    for f in files[::2]:
        shutil.copy(f, tmp_path / f.name)
    told: dict[str, int] = {}
    original = FileProgress.__call__

    def spy(self, lines: int, disk_bytes: int) -> None:
        told[self.path.name] = disk_bytes
        original(self, lines, disk_bytes)

    monkeypatch.setattr(FileProgress, "__call__", spy)
    monkeypatch.setattr("sys.stderr", terminal)
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    try:
        report = ingest_paths(con, [tmp_path], progress=True)
    finally:
        con.close()
    assert [(r.failed, r.loaded > 0) for r in report.files] == [("", True)] * 3
    assert told == {f.name: f.stat().st_size for f in files}
    for f in files[:2]:
        assert len(gzip.decompress(f.read_bytes())) > 1.5 * f.stat().st_size
    frames = [f for f in terminal.getvalue().split("\r") if f.startswith("ingest")]
    total = tqdm.format_sizeof(sum(f.stat().st_size for f in files), divisor=1000)
    assert re.search(rf"ingest: 100%.*\| {total}B/{total}B", frames[-1]), frames[-1]


def test_ingest_draws_nothing_when_not_asked(tmp_path, capsys) -> None:
    shutil.copy(SAMPLES / "requests-gz.jsonl.gz", tmp_path)
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    try:
        ingest_paths(con, [tmp_path])
    finally:
        con.close()
    assert capsys.readouterr().err == ""


def test_the_lab_waits_as_before_while_its_line_counts_the_seconds(terminal,
                                                                   monkeypatch) -> None:
    import subprocess
    import sys

    from analysis.lab.runner import _wait_showing

    monkeypatch.setattr("sys.stderr", terminal)
    quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    assert _wait_showing(quick, 10, "data plane", seconds=3) == 0
    assert re.search(r"lab: data plane: +33%.*1/3", terminal.getvalue())
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            _wait_showing(slow, 2, "sampler", seconds=2)
    finally:
        slow.kill()
        slow.wait()


def test_rollups_count_their_steps_to_the_end(tmp_path, terminal, monkeypatch) -> None:
    from test_report_fixture import make_store

    from analysis.rollups import build_rollups
    from analysis.store import connect

    db = make_store(tmp_path / "s.duckdb")
    monkeypatch.setattr("sys.stderr", terminal)
    con = connect(db)
    try:
        info = build_rollups(con)
    finally:
        con.close()
    assert info.n_signals > 0
    frames = [f for f in terminal.getvalue().split("\r") if f.startswith("rollups")]
    assert re.search(r"rollups: 100%.*(\d+)/\1 .*signals", frames[-1]), frames[-1]
