"""A Spark session we start, bound, and stop: ``postmortem rollup --engine spark``.

``spark_session`` starts PySpark on ``--master`` (``local[N]``, ``spark://host:port``,
``yarn``, or ``sc://host`` for Spark Connect). A local master runs the driver on
127.0.0.1 only (``spark.driver.host``/``bindAddress``), with no web UI, its scratch
space in a temporary directory, and the session's time zone UTC (the store's times
are zone-less UTC). The session is bounded in time: past ``timeout_s`` its jobs are
cancelled and the run fails with one line. At the end the session is stopped, the
JVM we started is ended by its PID, and the temporary directory removed.

A cluster master cannot bind the driver to 127.0.0.1 (the executors must reach it):
there the driver host comes from the cluster's own configuration (``spark-submit
--conf``, ``spark-defaults.conf``); see ``docs/scale-out.md``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analysis.errors import UserError

#: shuffle partitions of a local session: a few per core; the rollups' shuffles are small
LOCAL_PARTITIONS_PER_CORE = 2


@dataclass
class _Deadline:
    """Cancels the session's jobs once ``seconds`` have passed (``fired`` says so)."""

    seconds: float
    fired: bool = False
    timer: threading.Timer | None = field(default=None, repr=False)

    def arm(self, spark: Any) -> None:
        def cancel() -> None:
            self.fired = True
            with contextlib.suppress(Exception):  # the session may be stopping already
                if hasattr(spark, "interruptAll"):  # Spark Connect
                    spark.interruptAll()
                else:
                    spark.sparkContext.cancelAllJobs()

        self.timer = threading.Timer(self.seconds, cancel)
        self.timer.daemon = True
        self.timer.start()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _local_cores(master: str) -> int | None:
    """The cores of a ``local[N]``/``local[*]``/``local`` master, None for a cluster."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        n = master[6:-1].split(",")[0]
        if n == "*":
            return os.cpu_count() or 1
        return int(n) if n.isdigit() else None
    return None


def check_spark(master: str) -> None:
    """UserError when PySpark, or Java for a session of our own, is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise UserError("--engine spark needs PySpark: pip install"
                        " 'postmortem-analysis[spark]' (or use --engine duckdb)") from exc
    if not master.startswith("sc://") and shutil.which("java") is None and not os.environ.get(
            "JAVA_HOME"):
        raise UserError("--engine spark needs a Java runtime (17 or later) on PATH or in"
                        " JAVA_HOME: apt-get install openjdk-17-jre-headless")


@contextlib.contextmanager
def spark_session(master: str = "local[*]", *, timeout_s: float = 3600.0,
                  driver_memory: str = "2g", app: str = "postmortem rollup") -> Iterator[Any]:
    """A ``SparkSession`` on ``master`` for the duration of the block (module docstring).
    A job still running after ``timeout_s`` is cancelled and the block fails with a
    ``UserError`` naming ``--timeout``. ``driver_memory``: the local JVM's heap (a
    local session runs every task in it)."""
    check_spark(master)
    from pyspark.sql import SparkSession

    tmp = tempfile.mkdtemp(prefix="postmortem-spark-")
    builder = SparkSession.builder.appName(app)
    if master.startswith("sc://"):
        builder = builder.remote(master)
    else:
        builder = (builder.master(master).config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false"))
        cores = _local_cores(master)
        if cores is not None:
            builder = (
                builder.config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.sql.shuffle.partitions", str(LOCAL_PARTITIONS_PER_CORE * cores))
                .config("spark.local.dir", tmp)
                .config("spark.sql.warehouse.dir", os.path.join(tmp, "warehouse"))
                .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp}")
                # the roll tables come back to the driver whole: from the task, not through
                # the block manager, which may evict them under memory pressure
                .config("spark.driver.memory", driver_memory)
                .config("spark.task.maxDirectResultSize", "1g")
                .config("spark.driver.maxResultSize", "0")
            )
    # the exact percentiles keep a map of every distinct value per group: hash aggregation
    # holds many groups' maps at once (out of memory at 10M rows in a 2 GB local JVM);
    # sort-based aggregation holds one group's at a time and spills its sort to disk
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.useObjectHashAggregateExec", "false"))
    deadline = _Deadline(timeout_s)
    spark = None
    # the JVM's own idea of its address (the block manager's, which serves large task
    # results) follows SPARK_LOCAL_IP, not spark.driver.host: pin it for a local session
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_HOSTNAME": "localhost"} \
        if _local_cores(master) is not None else {}
    saved = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update(env)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:
            raise UserError(f"--master {master}: could not start Spark ({_first_line(exc)})") \
                from exc
        if not master.startswith("sc://"):
            spark.sparkContext.setLogLevel("ERROR")
        deadline.arm(spark)
        try:
            yield spark
        except UserError:
            raise
        except Exception as exc:
            if deadline.fired:
                raise UserError(f"the Spark rollup ran past --timeout {timeout_s:g} s and was"
                                " cancelled") from exc
            local = _local_cores(master) is not None
            raise UserError(
                f"--master {master}: the Spark job failed ({_first_line(exc)})"
                + (f"; a local JVM of {driver_memory} may be too small (--driver-memory), or"
                   " give the window (--start/--end or --manifest) so that it is not inferred"
                   if local else "")) from exc
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        deadline.disarm()
        if spark is not None:
            with contextlib.suppress(Exception):
                spark.stop()
        _stop_jvm()
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_jvm() -> None:
    """End the JVM PySpark launched for a local or cluster-client session (by its PID,
    through the gateway's process handle), so nothing of ours outlives the run."""
    try:
        from pyspark import SparkContext
    except ImportError:
        return
    gateway = getattr(SparkContext, "_gateway", None)
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    with contextlib.suppress(Exception):
        gateway.shutdown()
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()  # PySpark's launcher ends the JVM when its stdin closes
        with contextlib.suppress(Exception):
            proc.terminate()
            proc.wait(timeout=30)
    SparkContext._gateway = None
    SparkContext._jvm = None


def _first_line(exc: BaseException) -> str:
    """The error's first line; its class name when it has no text, or when rendering
    it fails (a Py4J error whose JVM is gone cannot ask the JVM for its message)."""
    try:
        text = str(exc).strip()
    except Exception:  # noqa: BLE001 - any failure to render still leaves the class name
        text = ""
    return text.splitlines()[0][:300] if text else type(exc).__name__
