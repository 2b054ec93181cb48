"""Build the lab's Go data plane with Debian's Go, outside the repository.

Debian's ``golang-go`` builds without modules (``GO111MODULE=off``; the Go
module proxy is out of reach). The binary is cached under the user's cache
directory, keyed by the source's hash, so a rebuild happens only when
``dataplane.go`` changes. Builders take turns under a lock and write under a
unique name (``analysis.filelock``): the lab tests build from several threads
at once on a machine with a cold cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from analysis.errors import UserError
from analysis.filelock import locked, replaced_atomically

SOURCE = Path(__file__).with_name("dataplane.go")
DEBIAN_GOPATH = "/usr/share/gocode"


def cache_dir() -> Path:
    """Where built binaries and Go's build cache live (never inside the repo)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "postmortem" / "lab"


def build_dataplane(source: Path = SOURCE, *, timeout_s: float = 300) -> Path:
    """Path of the compiled data plane for ``source``, building it if needed."""
    go = shutil.which("go")
    if go is None:
        raise UserError("lab: `go` is not on PATH (Debian package golang-go; scripts/sysdeps.sh)")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = cache_dir() / digest / "dataplane"
    if out.is_file():
        return out
    with locked(out):
        if not out.is_file():  # another builder may have finished while we waited
            _go_build(go, source, out, timeout_s)
    return out


def _go_build(go: str, source: Path, out: Path, timeout_s: float) -> None:
    """``go build`` of ``source`` into ``out`` (atomically), GOPATH-style as Debian ships Go."""
    with tempfile.TemporaryDirectory(prefix="postmortem-lab-go-") as gopath, \
            replaced_atomically(out) as tmp_out:
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
            "GOCACHE": str(cache_dir() / "gocache"),
            "GOFLAGS": "",
            "CGO_ENABLED": "0",
        }
        src = Path(gopath) / "dataplane.go"
        shutil.copyfile(source, src)
        res = subprocess.run(
            [go, "build", "-o", str(tmp_out), str(src)],
            cwd=gopath, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if res.returncode != 0:
            raise UserError(f"lab: go build of {source} failed: {res.stderr.strip()[:500]}")
