"""The Go data plane builds safely on a cold cache, from many threads at once.

Spec: on a machine with an empty cache, concurrent callers of ``build_dataplane``
(the lab tests start several lab runs in threads) all get the same working
binary; none finds another's temporary file gone. A cache that is already warm
is used as it is.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analysis.filelock import replaced_atomically
from analysis.lab import gobuild

needs_go = pytest.mark.skipif(shutil.which("go") is None,
                              reason="Debian golang-go is not installed (scripts/sysdeps.sh)")


@needs_go
def test_threads_building_on_a_cold_cache_all_get_the_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cold"))
    with ThreadPoolExecutor(max_workers=6) as pool:
        paths = list(pool.map(lambda _: gobuild.build_dataplane(), range(6)))
    assert len(set(paths)) == 1
    binary = paths[0]
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert str(binary).startswith(str(tmp_path / "cold"))
    leftovers = [p.name for p in binary.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@needs_go
def test_a_warm_cache_is_used_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "warm"))
    first = gobuild.build_dataplane()
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(gobuild, "_go_build", lambda *a, **k: pytest.fail("rebuilt"))
    assert gobuild.build_dataplane() == first
    assert first.stat().st_mtime_ns == stamp


def test_a_failed_write_leaves_the_old_target_and_no_temporary(tmp_path):
    target = tmp_path / "result"
    target.write_text("old")
    with pytest.raises(RuntimeError), replaced_atomically(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


def test_writers_in_threads_never_share_a_temporary_name(tmp_path):
    target = tmp_path / "result"

    def write(i: int) -> Path:
        with replaced_atomically(target) as tmp:
            tmp.write_text(str(i))
            return tmp

    with ThreadPoolExecutor(max_workers=8) as pool:
        temps = list(pool.map(write, range(64)))
    assert len(set(temps)) == 64
    assert target.read_text() in {str(i) for i in range(64)}
