"""A single-node Apache Kafka that only speaks SASL_SSL with SCRAM-SHA-512, for the security test.

Everything is made here, with the broker's own tools and the JDK's: a CA and a broker
certificate (``keytool``, signed for 127.0.0.1 and localhost), the KRaft log dir formatted with
an admin SCRAM user (``kafka.tools.StorageTool format --add-scram``, what ``kafka-storage.sh``
runs), and the application's user created on the running broker with ``kafka.admin.ConfigCommand``
(what ``kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[password=…]'`` runs), over the
SASL_SSL listener as the admin. Clients then trust only ``ca.pem``.

The jars are those of ``scripts/kafka/lib`` (``tests/integration/apache_kafka.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.integration import apache_kafka

ADMIN = ("admin", "admin-secret-7f3a")
MECHANISM = "SCRAM-SHA-512"
STORE_PASS = "changeit-store"


def _run(cmd: list[str], cwd: Path, what: str, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def make_certificates(d: Path) -> Path:
    """A CA, and a broker key pair signed by it for 127.0.0.1/localhost, in ``d``:
    ``broker.p12`` (the broker's keystore) and ``ca.pem`` (what clients trust)."""
    kt = ["keytool", "-storetype", "PKCS12", "-storepass", STORE_PASS, "-keypass", STORE_PASS]
    _run([*kt, "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
          "-dname", "CN=tokenpulse test CA", "-ext", "bc:c", "-keystore", "ca.p12"], d, "keytool CA")
    _run([*kt, "-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-file", "ca.pem"], d, "keytool export CA")
    _run([*kt, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
          "-dname", "CN=localhost", "-keystore", "broker.p12"], d, "keytool broker key")
    _run([*kt, "-certreq", "-alias", "broker", "-keystore", "broker.p12", "-file", "broker.csr"], d, "keytool CSR")
    _run([*kt, "-gencert", "-alias", "ca", "-keystore", "ca.p12", "-infile", "broker.csr", "-outfile", "broker.pem",
          "-rfc", "-validity", "2", "-ext", "san=ip:127.0.0.1,dns:localhost", "-ext", "eku=serverAuth"],
         d, "keytool sign")
    _run([*kt, "-importcert", "-noprompt", "-alias", "ca", "-keystore", "broker.p12", "-file", "ca.pem"],
         d, "keytool import CA")
    _run([*kt, "-importcert", "-alias", "broker", "-keystore", "broker.p12", "-file", "broker.pem"],
         d, "keytool import signed")
    return d / "ca.pem"


class SecureKafka:
    """One SASL_SSL broker; :meth:`start` returns its bootstrap, :meth:`add_user` creates a
    SCRAM user with the broker's admin tool, :meth:`stop` ends it."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir.resolve()
        self.proc: subprocess.Popen[bytes] | None = None
        self.bootstrap = ""
        self.cafile = self.dir / "ca.pem"

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{apache_kafka.lib_dir()}/*", main, *args]

    def start(self, timeout: float = 90.0) -> str:
        apache_kafka.fetch()
        self.dir.mkdir(parents=True, exist_ok=True)
        make_certificates(self.dir)
        port, cport = apache_kafka.free_port(), apache_kafka.free_port()
        user, pw = ADMIN
        jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{pw}";'
        props = f"""
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
controller.listener.names=CONTROLLER
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PKCS12
ssl.keystore.location={self.dir / 'broker.p12'}
ssl.keystore.password={STORE_PASS}
ssl.key.password={STORE_PASS}
ssl.truststore.type=PEM
ssl.truststore.location={self.cafile}
ssl.client.auth=none
log.dirs={self.dir / 'data'}
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
"""
        (self.dir / "server.properties").write_text(props)
        cid = _run(self._java("kafka.tools.StorageTool", "random-uuid"), self.dir, "StorageTool random-uuid").strip()
        # The first SCRAM user of a KRaft cluster is written into the metadata log at format time.
        _run(self._java("kafka.tools.StorageTool", "format", "--cluster-id", cid, "--config", "server.properties",
                        "--add-scram", f"{MECHANISM}=[name={user},password={pw}]"), self.dir, "StorageTool format")
        (self.dir / "admin.properties").write_text(
            f"security.protocol=SASL_SSL\nsasl.mechanism={MECHANISM}\nsasl.jaas.config={jaas}\n"
            f"ssl.truststore.type=PEM\nssl.truststore.location={self.cafile}\n")
        log = open(self.dir / "kafka.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["java", "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={apache_kafka.KAFKA_SCRIPTS / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={self.dir / 'logs'}", "-cp", f"{apache_kafka.lib_dir()}/*", "kafka.Kafka",
             str(self.dir / "server.properties")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join((self.dir / "kafka.log").read_text(errors="replace").splitlines()[-40:])
                self.stop()
                raise RuntimeError(f"the SASL_SSL broker did not start:\n{tail}")
            time.sleep(0.3)
        return self.bootstrap

    def _ready(self) -> bool:
        from kafka.admin import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, security_protocol="SASL_SSL",
                                     sasl_mechanism=MECHANISM, sasl_plain_username=ADMIN[0],
                                     sasl_plain_password=ADMIN[1], ssl_cafile=str(self.cafile),
                                     request_timeout_ms=3000)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except Exception:  # noqa: BLE001 - not up yet
            return False
        finally:
            admin.close()

    def add_user(self, name: str, password: str) -> None:
        """A SCRAM user, created the way an operator does: ``kafka-configs --alter --add-config``."""
        _run(self._java("kafka.admin.ConfigCommand", "--bootstrap-server", self.bootstrap,
                        "--command-config", str(self.dir / "admin.properties"), "--alter",
                        "--add-config", f"{MECHANISM}=[iterations=4096,password={password}]",
                        "--entity-type", "users", "--entity-name", name), self.dir, "kafka-configs --add-config")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
