"""A real single-node Apache Kafka (KRaft, broker+controller in one JVM) for integration tests.

The broker runs from the ``org.apache.kafka:kafka_2.13`` jars that
``scripts/kafka/kafka.sh fetch`` copies from Maven Central into ``scripts/kafka/lib/``
(git-ignored); this module drives that script.  Typical use in a conftest::

    reason = available()
    if reason is not True:
        pytest.skip(reason)
    kafka = ApacheKafka()
    bootstrap = kafka.start(tmp_path_factory.mktemp("kafka"))   # "127.0.0.1:PORT"
    try:
        yield bootstrap
    finally:
        kafka.stop()
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SCRIPTS = REPO_ROOT / "scripts" / "kafka"
KAFKA_SH = KAFKA_SCRIPTS / "kafka.sh"

#: Seconds allowed for ``kafka.sh fetch`` (maven on a cold ~/.m2 downloads ~45 MB).
FETCH_TIMEOUT = float(os.environ.get("KAFKA_FETCH_TIMEOUT", "600"))
#: Seconds allowed for the broker to answer after it is launched.
START_TIMEOUT = float(os.environ.get("KAFKA_START_TIMEOUT", "90"))


def lib_dir() -> Path:
    return Path(os.environ.get("KAFKA_LIB_DIR", KAFKA_SCRIPTS / "lib"))


def lib_populated() -> bool:
    return any(lib_dir().glob("kafka_2.13-*.jar"))


@functools.lru_cache(maxsize=1)
def _java_major() -> int | None:
    java = shutil.which("java")
    if java is None:
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8" -> 8


def available() -> bool | str:
    """``True`` when a broker can be started here, else a reason string to skip with."""
    if not KAFKA_SH.is_file():
        return f"{KAFKA_SH} is missing"
    if shutil.which("bash") is None:
        return "bash is not on PATH (needed by scripts/kafka/kafka.sh)"
    major = _java_major()
    if major is None:
        return "java is not on PATH (Apache Kafka needs Java 17+)"
    if major < 17:
        return f"java {major} found; Apache Kafka needs Java 17+"
    if not lib_populated() and shutil.which("mvn") is None:
        return f"maven (mvn) is not on PATH and {lib_dir()} holds no Kafka jars"
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def fetch() -> None:
    """Populate scripts/kafka/lib via maven (a no-op when it is already populated)."""
    try:
        proc = subprocess.run(
            ["bash", str(KAFKA_SH), "fetch"],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"kafka.sh fetch timed out after {FETCH_TIMEOUT:.0f}s") from e
    if proc.returncode != 0:
        raise RuntimeError(
            f"kafka.sh fetch failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


class ApacheKafka:
    """One broker process, started by :meth:`start` and ended by :meth:`stop`."""

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.workdir: Path | None = None
        self.port: int | None = None
        self.bootstrap: str | None = None

    def __repr__(self) -> str:
        return f"ApacheKafka(bootstrap={self.bootstrap!r}, workdir={self.workdir!r})"

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "kafka.log" if self.workdir else None

    def start(self, workdir: Path) -> str:
        """Format ``workdir``, start the broker on a free port, wait until it serves
        requests, and return its bootstrap address ``"127.0.0.1:PORT"``."""
        if self.bootstrap is not None:
            raise RuntimeError(f"{self!r} is already started")
        reason = available()
        if reason is not True:
            raise RuntimeError(f"cannot start Apache Kafka: {reason}")
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        fetch()

        env = dict(os.environ)
        env["KAFKA_START_TIMEOUT"] = str(int(self.start_timeout))
        env.setdefault("KAFKA_PYTHON", sys.executable)  # readiness probe (stdlib only)
        output = ""
        for _attempt in range(3):
            port = free_port()
            cport = free_port()
            while cport == port:
                cport = free_port()
            cmd = ["bash", str(KAFKA_SH), "start", str(workdir), str(port), str(cport)]
            try:
                proc = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=self.start_timeout + 60,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                self._stop_dir(workdir)
                raise RuntimeError(
                    f"Apache Kafka did not start within {self.start_timeout + 60:.0f}s; "
                    f"last lines of {workdir / 'kafka.log'}:\n{_tail(workdir / 'kafka.log')}"
                ) from None
            if proc.returncode == 0:
                self.workdir, self.port = workdir, port
                self.bootstrap = f"127.0.0.1:{port}"
                atexit.register(self.stop)
                return self.bootstrap
            output = proc.stdout + proc.stderr
            # Someone took a port between free_port() and the bind: try other ports.
            if "already in use" not in output:
                break
        if "last lines of" not in output:  # kafka.sh shows the log tail itself when it can
            output += f"\nlast lines of {workdir / 'kafka.log'}:\n{_tail(workdir / 'kafka.log')}"
        raise RuntimeError(f"Apache Kafka failed to start in {workdir}:\n{output}")

    def stop(self, grace: int | None = None) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after a grace period: ``grace`` seconds, or
        kafka.sh's default). Idempotent. ``grace=0`` for a broker whose data is thrown away:
        a clean shutdown of one that many tests used took seconds at the end of a session."""
        if self.workdir is None:
            return
        atexit.unregister(self.stop)
        workdir, self.workdir, self.bootstrap, self.port = self.workdir, None, None, None
        self._stop_dir(workdir, grace)

    @staticmethod
    def _stop_dir(workdir: Path, grace: int | None = None) -> None:
        env = dict(os.environ)
        if grace is not None:
            env["KAFKA_STOP_TIMEOUT"] = str(grace)
        subprocess.run(
            ["bash", str(KAFKA_SH), "stop", str(workdir)],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def __enter__(self) -> ApacheKafka:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
