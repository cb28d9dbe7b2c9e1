"""A real OpenLDAP ``slapd`` for tests: a generated bank directory on loopback ports, plain and ldaps://.

:func:`require_slapd` skips a test when Debian's ``slapd`` is not installed
(``make test`` installs it when run as root) — or fails it when
``CTID_REQUIRE_LDAP=1`` (CI).  :class:`SlapdServer` writes a temporary
``slapd.conf``, loads :data:`DIRECTORY_LDIF` with ``slapadd`` and runs slapd
in the foreground on two free ports; :func:`make_certificates` makes a test
CA and a server certificate (with ``cryptography``) for the ldaps:// listener.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e import free_port

BASE = "dc=bank,dc=example"
PASSWORD = "S3cret-ldap"
SERVICE_DN = f"cn=ctid,ou=services,{BASE}"
SERVICE_PASSWORD = "ctid-service-pw"
ROOT_DN = f"cn=admin,{BASE}"
SCHEMAS = ("core", "cosine", "inetorgperson")
START_TIMEOUT = 20.0


def slapd_binary(name: str = "slapd") -> str | None:
    """The path of ``slapd`` (or ``slapadd``), on PATH or in /usr/sbin, or None."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    return found


def require_slapd() -> None:
    """Skip (or under ``CTID_REQUIRE_LDAP=1`` fail) the test when slapd and slapadd are not installed."""
    if slapd_binary("slapd") and slapd_binary("slapadd"):
        return
    reason = "OpenLDAP slapd is not installed (apt-get install slapd ldap-utils; make test does it as root)"
    if os.environ.get("CTID_REQUIRE_LDAP") == "1":
        pytest.fail(f"CTID_REQUIRE_LDAP=1 but {reason}")
    pytest.skip(reason + "; set CTID_REQUIRE_LDAP=1 to fail instead")


def ssha(password: str) -> str:
    """The ``{SSHA}`` userPassword value of ``password`` (salted SHA-1, what slapd checks)."""
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _person(uid: str, name: str, city: str | None = None, skills: tuple[str, ...] = ()) -> str:
    lines = [f"dn: uid={uid},ou=people,{BASE}", "objectClass: inetOrgPerson", f"uid: {uid}", f"cn: {name}",
             f"sn: {name.split()[-1]}", f"userPassword: {ssha(PASSWORD)}"]
    lines += [f"l: {city}"] if city else []
    lines += [f"businessCategory: {skill}" for skill in skills]
    return "\n".join(lines)


def _group(dn: str, *members: str) -> str:
    cn = dn.split(",")[0].split("=")[1]
    return "\n".join([f"dn: {dn}", "objectClass: groupOfNames", f"cn: {cn}"]
                     + [f"member: uid={uid},ou=people,{BASE}" for uid in members])


GROUPS = f"ou=groups,{BASE}"
MANAGES = f"ou=manages,{GROUPS}"
ROLE_GROUPS = {role: f"cn={role}s,{GROUPS}" for role in ("agent", "supervisor", "admin", "leader")}


def directory_ldif() -> str:
    """The test bank: agents 1001 (Shanghai) and 1002 (Beijing), supervisor 1900, admin 1999, leader 2000, 3000 no role.

    Supervisor 1900 manages the skill group ``accounts`` and the city ``Shanghai``.
    """
    entries = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Bank\ndc: bank",
        f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: {MANAGES}\nobjectClass: organizationalUnit\nou: manages",
        f"dn: {SERVICE_DN}\nobjectClass: person\ncn: ctid\nsn: service\nuserPassword: {ssha(SERVICE_PASSWORD)}",
        _person("1001", "Li Na", "Shanghai", ("accounts:5", "consultation")),
        _person("1002", "Wang Wei", "Beijing", ("accounts:3", "bogus:12")),
        _person("1900", "Zhang Min", "Shanghai", ("accounts:9",)),
        _person("1999", "Chen Admin"),
        _person("2000", "Liu Leader", "Beijing"),
        _person("3000", "No Role", "Beijing"),
        _group(ROLE_GROUPS["agent"], "1001", "1002", "1900"),
        _group(ROLE_GROUPS["supervisor"], "1900"),
        _group(ROLE_GROUPS["admin"], "1999"),
        _group(ROLE_GROUPS["leader"], "2000"),
        _group(f"cn=accounts,{MANAGES}", "1900"),
        _group(f"cn=Shanghai,{MANAGES}", "1900"),
    ]
    return "\n\n".join(entries) + "\n"


@dataclass(frozen=True)
class Certificates:
    """PEM files: the test CA, and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certificates:
    """A fresh CA and a server certificate for ``names`` (DNS names or IP addresses), written under ``folder``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctid test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n.replace(".", "").isdigit() else x509.DNSName(n)
            for n in names]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    files = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class SlapdServer:
    """slapd on ``ldap://127.0.0.1:port`` and ``ldaps://127.0.0.1:tls_port``, serving :func:`directory_ldif`."""

    def __init__(self, folder: Path, certificates: Certificates):
        self.folder = folder
        self.certificates = certificates
        self.port, self.tls_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _config(self) -> Path:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        schemas = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
        c = self.certificates
        text = f"""{schemas}
pidfile {self.folder / "slapd.pid"}
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {c.ca}
TLSCertificateFile {c.cert}
TLSCertificateKeyFile {c.key}
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ssha("root-pw")}
directory {data}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""
        path = self.folder / "slapd.conf"
        path.write_text(text)
        return path

    def start(self) -> None:
        """Load the directory and start slapd; returns once both ports accept connections."""
        config = self._config()
        ldif = self.folder / "directory.ldif"
        ldif.write_text(directory_ldif())
        subprocess.run([slapd_binary("slapadd"), "-f", str(config), "-l", str(ldif)], check=True,
                       capture_output=True, timeout=START_TIMEOUT)
        self.process = subprocess.Popen(
            [slapd_binary("slapd"), "-f", str(config), "-h", f"{self.url}/ {self.ldaps_url}/", "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_listening(port) for port in (self.port, self.tls_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("slapd did not start: " + (self.process.stderr.read().decode()[-2000:]))
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop slapd (and wait for it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
