"""Certificates and node keys (deploy.pki), the deploy helpers and the CLI wrappers."""

from __future__ import annotations

import argparse
import ipaddress
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aclecg_cli import deploy as deploy_cli
from deploy import daemons, flwr_cli, pki


def cli(argv: list[str]) -> int:
    """``aclecg`` with only the deploy commands registered."""
    parser = argparse.ArgumentParser(prog="aclecg")
    deploy_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki") / "coordinator" / "pki"
    pki.make_ca(out)
    pki.make_server_certificate(out, out)
    return out


def test_ca_and_server_files_are_owner_only(pki_dir: Path) -> None:
    for name in (pki.CA_CERT, pki.CA_KEY, pki.SERVER_CERT, pki.SERVER_KEY):
        assert _mode(pki_dir / name) == 0o600, name
    assert _mode(pki_dir) == 0o700
    assert _mode(pki_dir.parent) == 0o700  # created parents too


def test_server_certificate_san_and_chain(pki_dir: Path) -> None:
    ca = x509.load_pem_x509_certificate((pki_dir / pki.CA_CERT).read_bytes())
    cert = x509.load_pem_x509_certificate((pki_dir / pki.SERVER_CERT).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    cert_key = cert.public_key()
    assert isinstance(cert_key, ec.EllipticCurvePublicKey)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key((pki_dir / pki.SERVER_KEY).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert_key.public_numbers()


def test_server_certificate_custom_hosts(pki_dir: Path, tmp_path: Path) -> None:
    files = pki.make_server_certificate(pki_dir, tmp_path, hosts=("link.example.org", "10.0.0.5"))
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["link.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]


def test_site_key_formats_and_permissions(tmp_path: Path) -> None:
    files = pki.make_site_key(tmp_path / "keys", "hospital-a")
    assert files.private.name == "hospital-a" and files.public.name == "hospital-a.pub"
    assert _mode(files.private) == 0o600 and _mode(files.public) == 0o600
    assert _mode(tmp_path / "keys") == 0o700
    private_text = files.private.read_text()
    assert private_text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    private = serialization.load_ssh_private_key(files.private.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"
    public_line = files.public.read_text()
    assert re.fullmatch(r"ecdsa-sha2-nistp384 [A-Za-z0-9+/=]+ hospital-a\n", public_line)
    public = pki.load_site_public_key(files.public)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    pki.make_site_key(tmp_path, "site1")
    with pytest.raises(FileExistsError, match="site1"):
        pki.make_site_key(tmp_path, "site1")
    pki.make_site_key(tmp_path, "site1", overwrite=True)
    for bad in ("", "../evil", "a b", "-x"):
        with pytest.raises(ValueError, match="site name"):
            pki.make_site_key(tmp_path, bad)
    with pytest.raises(FileNotFoundError, match="make-ca"):
        pki.make_server_certificate(tmp_path / "no-ca", tmp_path)


def test_rejects_non_ecdsa_public_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path = tmp_path / "x.pub"
    path.write_bytes(key.public_bytes(serialization.Encoding.OpenSSH,
                                      serialization.PublicFormat.OpenSSH))
    with pytest.raises(ValueError, match="ECDSA"):
        pki.load_site_public_key(path)
    path.write_text("not a key")
    with pytest.raises(ValueError, match="OpenSSH"):
        pki.load_site_public_key(path)


def test_cli_writes_keys_and_prints_no_secret(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["deploy", "make-ca", str(tmp_path / "ca")]) == 0
    assert cli(["deploy", "make-server-cert", "--ca-dir", str(tmp_path / "ca")]) == 0
    assert cli(["deploy", "make-site-key", "site1", "--out-dir", str(tmp_path / "h")]) == 0
    assert cli(["deploy", "make-ca", str(tmp_path / "ca")]) == 1  # no silent overwrite
    out = capsys.readouterr()
    secrets = [(tmp_path / "ca" / "ca.key").read_text(), (tmp_path / "h" / "site1").read_text()]
    for secret in secrets:
        body = secret.splitlines()[1]
        assert body not in out.out and body not in out.err
    assert "refusing to overwrite" in out.err


def test_node_config_and_commands(tmp_path: Path) -> None:
    text = flwr_cli.format_node_config({"data-dir": "/data/a b", "layout": "ptbxl", "n": 3,
                                        "x": True})
    assert text == "data-dir='/data/a b' layout='ptbxl' n=3 x=true"
    assert flwr_cli.format_node_config({"p": "it's"}) == "p=\"it's\""
    with pytest.raises(ValueError):
        flwr_cli.format_node_config({"p": "it's \"odd\""})
    tls = daemons.TlsFiles.in_dir(tmp_path)
    cmd = daemons.superlink_command(tls, tmp_path / "db.sqlite", 9093)
    assert cmd[:4] == daemons.flower_daemon("flower-superlink")  # plain logs off a terminal
    for flag in ("--enable-supernode-auth", "--disable-runtime-dependency-installation",
                 "--ssl-certfile", "--ssl-keyfile", "--ssl-ca-certfile", "--database"):
        assert flag in cmd
    assert "--insecure" not in cmd
    node = daemons.supernode_command("127.0.0.1:9093", tls.ca_cert, tmp_path / "k", {"a": "b"},
                                     9100)
    assert node[node.index("--root-certificates") + 1] == str(tls.ca_cert)
    assert node[node.index("--auth-supernode-private-key") + 1] == str(tmp_path / "k")
    assert "--insecure" not in node


def test_write_connection_keeps_other_entries(tmp_path: Path) -> None:
    import tomllib

    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    flwr_cli.write_connection(tmp_path, "a", "127.0.0.1:1", ca)
    flwr_cli.write_connection(tmp_path, "b", "[::1]:2", ca, make_default=False)
    config = tomllib.loads((tmp_path / "config.toml").read_text())
    assert config["superlink"]["default"] == "a"
    assert config["superlink"]["b"] == {"address": "[::1]:2", "root-certificates": str(ca)}
    assert "insecure" not in config["superlink"]["a"]


def test_supernode_preflight_refuses_unusable_data(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    key = pki.make_site_key(tmp_path, "site1").private
    pki_dir = tmp_path / "pki"
    pki.make_ca(pki_dir)
    base = ["deploy", "supernode", "--site", "site1", "--key", str(key), "--ca-cert",
            str(pki_dir / "ca.crt")]
    assert cli([*base, "--data-dir", str(tmp_path / "missing")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert cli([*base, "--data-dir", str(empty)]) == 1
    assert "no WFDB records" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "r1.hea").write_text("r1 12 500 5000\n")  # header without signal lines/files
    assert cli([*base, "--data-dir", str(broken), "--layout", "wfdb"]) == 1
    err = capsys.readouterr().err
    assert "cannot serve" in err and "r1" in err


def test_supernode_can_require_secure_aggregation(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key = pki.make_site_key(tmp_path, "site1").private
    pki.make_ca(tmp_path / "pki")
    launched: list[list[str]] = []
    monkeypatch.setattr(deploy_cli, "_exec", lambda cmd, env: launched.append(cmd) or 0)
    assert cli(["deploy", "supernode", "--site", "site1", "--key", str(key), "--ca-cert",
                str(tmp_path / "pki" / "ca.crt"), "--data-dir", str(tmp_path), "--skip-check",
                "--require-secure-aggregation"]) == 0
    (cmd,) = launched
    assert "require-secure-aggregation=true" in cmd[cmd.index("--node-config") + 1]
