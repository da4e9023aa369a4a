"""``aclecg deploy``: certificates, keys, SuperLink and per-hospital SuperNodes over TLS.

Coordinator: ``make-ca``, ``make-server-cert``, ``connect``, ``register-site``, ``superlink``,
``submit``, ``follow``, ``status``. Hospital: ``make-site-key``, ``app-hash``, ``supernode``.
Telemetry, update checks and runtime dependency installation are always off.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aclecg_core.data.sources import LAYOUTS
from aclecg_core.fed import site
from aclecg_runtime import environment
from deploy import daemons, flwr_cli, pki
from deploy.app_identity import parse_identity, project_app_identity

DEFAULT_CONNECTION = "hospitals"
DEFAULT_PORT = 9093
PROJECT_DIR = Path(__file__).resolve().parents[1]


def register(subparsers: Any) -> None:
    """Add ``aclecg deploy ...``."""
    parser = subparsers.add_parser("deploy", help="real deployment: TLS, node keys, daemons")
    sub = parser.add_subparsers(dest="deploy_command", required=True)

    p = sub.add_parser("make-ca", help="create the federation's certificate authority")
    p.add_argument("dir", type=Path, help="folder for ca.crt and ca.key (keep ca.key offline)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_make_ca)

    p = sub.add_parser("make-server-cert", help="issue the SuperLink's TLS certificate")
    p.add_argument("--ca-dir", type=Path, required=True, help="folder of ca.crt and ca.key")
    p.add_argument("--out-dir", type=Path,
                   help="folder for server.pem/server.key (default: the CA folder)")
    p.add_argument("--host", action="append", dest="hosts",
                   help="DNS name or IP the sites dial (repeatable; default: localhost, "
                        "127.0.0.1, ::1)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_make_server_cert)

    p = sub.add_parser("make-site-key", help="create a hospital's node key pair (ECDSA P-384)")
    p.add_argument("site", help="site name (also the file name of the key)")
    p.add_argument("--out-dir", type=Path, default=Path("."), help="folder for SITE and SITE.pub")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_make_site_key)

    p = sub.add_parser("app-hash", help="print the identity of the app 'submit' sends from a tree")
    p.add_argument("project_dir", type=Path, nargs="?", default=PROJECT_DIR,
                   help="the Flower app (project) folder (default: this project)")
    p.set_defaults(func=_app_hash)

    p = sub.add_parser("connect", help="write the SuperLink connection into $FLWR_HOME/config.toml")
    p.add_argument("--address", default=f"127.0.0.1:{DEFAULT_PORT}", help="SuperLink host:port")
    p.add_argument("--ca-cert", type=Path, required=True, help="the federation's ca.crt")
    p.add_argument("--connection", default=DEFAULT_CONNECTION, help="connection name")
    p.set_defaults(func=_connect)

    p = sub.add_parser("register-site", help="register a hospital's public key with the SuperLink")
    p.add_argument("public_key", type=Path, help="the SITE.pub file the hospital sent")
    p.add_argument("--name", help="node name (default: the file name without .pub)")
    p.add_argument("--connection", default=DEFAULT_CONNECTION)
    p.set_defaults(func=_register_site)

    p = sub.add_parser("superlink", help="run the SuperLink (TLS, node authentication)")
    p.add_argument("--pki-dir", type=Path, required=True,
                   help="folder of ca.crt, server.pem, server.key")
    p.add_argument("--database", type=Path, required=True,
                   help="SQLite state file (registered nodes, runs); reused on restart")
    p.add_argument("--host", default=daemons.LOOPBACK, help="address to listen on")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--log-file", type=Path)
    p.set_defaults(func=_superlink)

    p = sub.add_parser("supernode", help="check the site's data, then run its SuperNode")
    p.add_argument("--site", required=True, help="site name (sent to the ClientApp as node config)")
    p.add_argument("--site-index", type=int,
                   help="site number in reports (default: the digits ending the site name)")
    p.add_argument("--key", type=Path, required=True, help="the site's private key file")
    p.add_argument("--data-dir", type=Path, required=True, help="the site's ECG folder")
    p.add_argument("--layout", default="auto", choices=LAYOUTS)
    p.add_argument("--cache-dir", type=Path,
                   help="the site's cache of preprocessed records (default: "
                        "$XDG_CACHE_HOME/aclecg, else ~/.cache/aclecg of the site's user)")
    p.add_argument("--device", default="auto", type=_device,
                   help="where the site trains: auto (its GPU if it has one), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of the site's training (0: torch's default)")
    p.add_argument("--superlink", default=f"127.0.0.1:{DEFAULT_PORT}", help="SuperLink host:port")
    p.add_argument("--ca-cert", type=Path, required=True, help="the federation's ca.crt")
    p.add_argument("--allow-app", action="append", default=[], metavar="ID",
                   help="run only this app (identity from 'app-hash'; repeatable); "
                        "default: any app the coordinator submits")
    p.add_argument("--clientapp-port", type=int, default=9094,
                   help="local (loopback) port for the ClientApp runtime; one per SuperNode")
    p.add_argument("--min-records", type=int, default=8,
                   help="refuse to start with fewer usable records than this")
    p.add_argument("--skip-check", action="store_true", help="skip the data pre-flight check")
    p.add_argument("--require-secure-aggregation", action="store_true",
                   help="train only in runs with secure aggregation (refuse plain rounds)")
    p.set_defaults(func=_supernode)

    p = sub.add_parser("submit", help="submit a federated run; prints the run id")
    p.add_argument("--app", type=Path, default=PROJECT_DIR, help="the Flower app (project) folder")
    p.add_argument("--connection", default=DEFAULT_CONNECTION)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="run config override (repeatable), e.g. --set num-server-rounds=2; "
                        "run-dir defaults to APP/runs/<time>-deploy (absolute)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("follow", help="stream a run's log; exit 0 only if it completed")
    p.add_argument("run_id", type=int)
    p.add_argument("--connection", default=DEFAULT_CONNECTION)
    p.set_defaults(func=_follow)

    p = sub.add_parser("status", help="list runs (or one run) on the SuperLink")
    p.add_argument("run_id", type=int, nargs="?")
    p.add_argument("--connection", default=DEFAULT_CONNECTION)
    p.set_defaults(func=_status)


def _fail(message: str) -> int:
    print(f"aclecg deploy: {message}", file=sys.stderr)
    return 1


def _flwr_home() -> Path:
    return Path(os.environ.get("FLWR_HOME", "~/.flwr")).expanduser()


def _make_ca(args: argparse.Namespace) -> int:
    try:
        files = pki.make_ca(args.dir, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        return _fail(str(exc))
    print(f"CA certificate: {files.cert} (give it to every hospital)\n"
          f"CA key:         {files.key} (keep it private; needed only to issue certificates)")
    return 0


def _make_server_cert(args: argparse.Namespace) -> int:
    hosts = tuple(args.hosts) if args.hosts else pki.DEFAULT_SERVER_HOSTS
    try:
        files = pki.make_server_certificate(args.ca_dir, args.out_dir or args.ca_dir, hosts,
                                            overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    print(f"SuperLink certificate: {files.cert} (valid for {', '.join(hosts)})\n"
          f"SuperLink key:         {files.key} (stays on the SuperLink machine)")
    return 0


def _make_site_key(args: argparse.Namespace) -> int:
    try:
        files = pki.make_site_key(args.out_dir, args.site, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        return _fail(str(exc))
    print(f"private key: {files.private} (never leaves this hospital)\n"
          f"public key:  {files.public} (send this file to the coordinator)")
    return 0


def _connect(args: argparse.Namespace) -> int:
    if not args.ca_cert.is_file():
        return _fail(f"{args.ca_cert}: CA certificate not found")
    path = flwr_cli.write_connection(_flwr_home(), args.connection, args.address, args.ca_cert)
    print(f"SuperLink connection '{args.connection}' -> {args.address} (TLS) written to {path}")
    return 0


def _register_site(args: argparse.Namespace) -> int:
    name = args.name or args.public_key.name.removesuffix(".pub")
    try:
        pki.check_site_name(name)
        pki.load_site_public_key(args.public_key)
        node_id = flwr_cli.register_node(args.public_key, args.connection, name,
                                         environment.flower_env())
    except (ValueError, RuntimeError, OSError) as exc:
        return _fail(str(exc))
    print(f"registered site '{name}' as node {node_id}")
    return 0


def _superlink(args: argparse.Namespace) -> int:
    tls = daemons.TlsFiles.in_dir(args.pki_dir)
    try:
        tls.check()
    except FileNotFoundError as exc:
        return _fail(f"{exc} (run make-ca and make-server-cert first)")
    args.database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    cmd = daemons.superlink_command(tls, args.database, args.port, args.host,
                                    log_file=args.log_file)
    return _exec(cmd, environment.flower_env())


def _supernode(args: argparse.Namespace) -> int:
    try:
        pki.check_site_name(args.site)
        allowed_apps = [parse_identity(value) for value in args.allow_app]
    except ValueError as exc:
        return _fail(str(exc))
    for path, what in ((args.key, "private key"), (args.ca_cert, "CA certificate")):
        if not path.is_file():
            return _fail(f"{path}: {what} not found")
    data_dir = args.data_dir.expanduser().resolve()
    if not args.skip_check:
        problem = site_preflight(data_dir, args.layout, args.min_records)
        if problem:
            return _fail(f"site '{args.site}' cannot serve: {problem}")
    cache_dir = (args.cache_dir or site.default_cache_dir()).expanduser().resolve()
    if args.threads < 0:
        return _fail(f"--threads must be >= 0, got {args.threads}")
    node_config: dict[str, str | int | bool] = {
        site.NAME: args.site, site.DATA_DIR: str(data_dir), site.LAYOUT: args.layout,
        site.CACHE_DIR: str(cache_dir), site.DEVICE: args.device, site.THREADS: args.threads}
    if args.require_secure_aggregation:
        node_config[site.REQUIRE_SECAGG] = True
    if args.site_index is not None:  # else the digits ending the site name (SiteSettings)
        node_config[site.INDEX] = args.site_index
    cmd = daemons.supernode_command(args.superlink, args.ca_cert, args.key, node_config,
                                    args.clientapp_port)
    cmd = daemons.guarded_supernode_command(cmd, args.site, allowed_apps)
    return _exec(cmd, {**environment.flower_env(), **site_scratch(cache_dir)})


def site_scratch(cache_dir: Path) -> dict[str, str]:
    """Environment that keeps the site's scratch files (temporary files, torch's compile
    cache) inside its cache folder instead of the machine's shared /tmp."""
    scratch = {"TMPDIR": cache_dir / "tmp", "TORCHINDUCTOR_CACHE_DIR": cache_dir / "torch"}
    for folder in scratch.values():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {key: str(folder) for key, folder in scratch.items()}


def _device(value: str) -> str:
    try:
        return site.check_device(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _app_hash(args: argparse.Namespace) -> int:
    try:
        print(project_app_identity(args.project_dir))
    except ValueError as exc:
        return _fail(str(exc))
    return 0


def site_preflight(data_dir: Path, layout: str, min_records: int) -> str | None:
    """Why the site's data cannot serve a run, or None if it can.

    Loads the folder as the ClientApp would (every record read and checked); reports missing
    folders, unreadable files, wrong leads and too few usable records.
    """
    from aclecg_core.data.cohort import DataError
    from aclecg_core.data.loading import load_cohort

    if not data_dir.is_dir():
        return f"{data_dir}: no such folder"
    try:
        cohort = load_cohort([data_dir], layout, workers=1)
    except DataError as exc:
        return str(exc)
    usable = len(cohort.records)
    rejected = cohort.rejected
    print(f"pre-flight: {data_dir} ({layout}): {usable} usable records, {len(rejected)} rejected")
    for r in rejected[:10]:
        print(f"  rejected {r.path}: {r.reason}")
    if usable < min_records:
        return (f"{data_dir}: only {usable} usable records (at least {min_records} needed)"
                + (f"; {len(rejected)} rejected, first: {rejected[0].path}: {rejected[0].reason}"
                   if rejected else ""))
    return None


def _exec(cmd: list[str], env: Mapping[str, str]) -> int:
    """Replace this process by the daemon (signals and exit code go straight to it).

    Files the daemon creates (database, logs, caches) are owner-only (umask 077).
    """
    os.umask(0o077)
    print("starting:", " ".join(cmd), flush=True)
    os.execve(cmd[0] if os.path.isabs(cmd[0]) else _which(cmd[0]), cmd, dict(env))
    return 1  # not reached


def _which(name: str) -> str:
    import shutil

    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not found on PATH")
    return found


def _submit(args: argparse.Namespace) -> int:
    from aclecg_core.fed.config import ConfigError, parse_overrides

    try:
        overrides = parse_overrides(args.set)
        if not overrides.get("run-dir"):
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            overrides["run-dir"] = str((args.app / "runs" / f"{stamp}-deploy").resolve())
        run_id = flwr_cli.submit_run(args.app, args.connection, environment.flower_env(), overrides)
    except (ConfigError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    print(run_id)
    print(f"run folder (on the SuperLink machine): {overrides['run-dir']}", file=sys.stderr)
    return 0


def _follow(args: argparse.Namespace) -> int:
    import subprocess

    env = environment.flower_env()
    with subprocess.Popen([environment.executable("flwr"), "log", str(args.run_id), args.connection,
                           "--stream"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in flwr_cli.without_tracebacks(proc.stdout):
            sys.stdout.write(line)
    return _outcome(args.run_id, args.connection, env, finished=True)


def _status(args: argparse.Namespace) -> int:
    import subprocess

    env = environment.flower_env()
    if args.run_id is not None:
        return _outcome(args.run_id, args.connection, env, finished=False)
    return subprocess.run([environment.executable("flwr"), "list", args.connection], env=env,
                          check=False).returncode


def _outcome(run_id: int, connection: str, env: Mapping[str, str], finished: bool) -> int:
    """Print the run's status in one line, with the reason if it failed. Exit code 1 for a
    failed or stopped run, and with ``finished`` for any run that has not completed."""
    try:
        status, reason = flwr_cli.run_outcome(run_id, connection, env)
    except RuntimeError as exc:
        return _fail(str(exc))
    if reason:
        return _fail(f"run {run_id} {status.removeprefix('finished:')}: {reason}")
    print(f"run {run_id}: {status}")
    done = status.startswith("finished")
    return 0 if status == flwr_cli.FINISHED_OK or not (done or finished) else 1
