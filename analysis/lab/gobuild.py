"""Build the lab's Go data plane with Debian's Go, outside the repository.

Debian's ``golang-go`` builds without modules (``GO111MODULE=off``; the Go
module proxy is out of reach). The binary is cached under the user's cache
directory, keyed by the source's hash, so a rebuild happens only when
``dataplane.go`` changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from analysis.errors import UserError

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
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="postmortem-lab-go-") as gopath:
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
        tmp_out = out.with_suffix(f".tmp{os.getpid()}")
        res = subprocess.run(
            [go, "build", "-o", str(tmp_out), str(src)],
            cwd=gopath, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if res.returncode != 0:
            raise UserError(f"lab: go build of {source} failed: {res.stderr.strip()[:500]}")
        tmp_out.replace(out)
    return out
