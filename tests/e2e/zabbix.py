"""A private Zabbix 6.0 for the end-to-end tests: server, API, scratch database.

Brought up the way the captures in `shared/fixtures/captured/zabbix/` were made: the Debian
packages' `zabbix_server` against a scratch PostgreSQL database (`zabbix_e2e_<random>`, loaded
from the package's schema and dropped in teardown), and the frontend's JSON-RPC API served by
`php -S` on loopback. The frontend reads its settings from `/etc/zabbix/zabbix.conf.php` (a path
Debian compiles in); rather than write there, `php` runs in a private mount namespace in which a
directory of the test holding its own `zabbix.conf.php` is mounted over /etc/zabbix.

The server re-reads its configuration every second (`CacheUpdateFrequency=1`), so hosts, items
and actions made through the API take effect within a second or two; `Zabbix.push` retries
`zabbix_sender` until the server knows the item. Webhook delivery state is Zabbix's own
`alert.get`, shown in the failure report.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import re
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    LOCALHOST,
    Command,
    HarnessError,
    Json,
    Service,
    Stack,
    clean_environment,
    require_binary,
    wait_until,
)

INSTALL = "zabbix-server-pgsql zabbix-frontend-php php-pgsql zabbix-sender"
SERVER_BINARY = Path("/usr/sbin/zabbix_server")
FRONTEND_DIR = Path("/usr/share/zabbix")
SCHEMA_DIR = Path("/usr/share/zabbix-server-pgsql")
SCHEMA_FILES = ("schema.sql.gz", "images.sql.gz", "data.sql.gz")
FRONTEND_CONFIG_DIR = "/etc/zabbix"  # where Debian's frontend reads zabbix.conf.php
API_PATH = "/api_jsonrpc.php"

POSTGRES_HOST = os.environ.get("ZABBIX_E2E_PGHOST", LOCALHOST)
POSTGRES_PORT = os.environ.get("ZABBIX_E2E_PGPORT", "5432")
POSTGRES_USER = os.environ.get("ZABBIX_E2E_PGUSER", "postgres")

ADMIN = ("Admin", "zabbix")  # a fresh database's super admin
SUPER_ADMIN_ROLE = "3"
ADMINISTRATORS_GROUP = "7"  # "Zabbix administrators"
ALL_SEVERITIES = 63
READY_WITHIN = 60.0

_TRAPPER_PORTS = (20000, 32767)
_PROCESSED = re.compile(r"processed: (\d+); failed: (\d+)")

_SERVER_CONFIG = """\
LogType=console
DebugLevel=3
PidFile={directory}/zabbix_server.pid
SocketDir={directory}
DBHost={db_host}
DBPort={db_port}
DBName={db_name}
DBUser={db_user}
ListenIP={listen}
ListenPort={port}
AllowRoot=1
CacheUpdateFrequency=1
StartPollers=1
StartPollersUnreachable=1
StartPreprocessors=1
StartHistoryPollers=1
StartTrappers=2
StartPingers=0
StartDiscoverers=0
StartHTTPPollers=0
StartTimers=1
StartEscalators=1
StartAlerters=2
StartDBSyncers=1
StartLLDProcessors=1
StartProxyPollers=0
StartReportWriters=0
StartODBCPollers=0
HousekeepingFrequency=0
Timeout=10
"""

_FRONTEND_CONFIG = """\
<?php
$DB['TYPE'] = 'POSTGRESQL';
$DB['SERVER'] = '{db_host}';
$DB['PORT'] = '{db_port}';
$DB['DATABASE'] = '{db_name}';
$DB['USER'] = '{db_user}';
$DB['PASSWORD'] = '';
$DB['SCHEMA'] = '';
$DB['ENCRYPTION'] = false;
$DB['KEY_FILE'] = '';
$DB['CERT_FILE'] = '';
$DB['CA_FILE'] = '';
$DB['VERIFY_HOST'] = false;
$DB['CIPHER_LIST'] = '';
$DB['VAULT_URL'] = '';
$DB['VAULT_DB_PATH'] = '';
$DB['VAULT_TOKEN'] = '';
$DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER = '{listen}';
$ZBX_SERVER_PORT = '{port}';
$ZBX_SERVER_NAME = 'e2e';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
"""


def require_zabbix() -> tuple[Path, Path, Path, Path]:
    """zabbix_server, zabbix_sender, php and psql; fails the test (never skips) without them."""
    needed = [SERVER_BINARY, FRONTEND_DIR / API_PATH.lstrip("/")]
    needed += [SCHEMA_DIR / name for name in SCHEMA_FILES]
    for path in needed:
        if not path.exists():
            raise HarnessError(
                f"{path} is missing; the Zabbix e2e test drives a real Zabbix 6.0: "
                f"install it with `apt-get install --no-install-recommends {INSTALL}`"
            )
    sender = require_binary("zabbix_sender", install=INSTALL)
    php = require_binary("php", install=INSTALL)
    psql = require_binary("psql", install="postgresql-client")
    return SERVER_BINARY, Path(sender), Path(php), Path(psql)


# --- the scratch database -------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    name: str
    psql: Path

    def run(self, sql: str, database: str = "postgres", stdin: bytes | None = None) -> None:
        argv = [str(self.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", POSTGRES_HOST]
        argv += ["-p", POSTGRES_PORT, "-U", POSTGRES_USER, "-d", database]
        argv += ["-c", sql] if stdin is None else ["-1", "-f", "-"]
        env = {**os.environ, "PGOPTIONS": "-c synchronous_commit=off"}
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=120, env=env)
        if done.returncode != 0:
            raise HarnessError(
                f"psql on {POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database} failed "
                f"(exit {done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
            )


@contextlib.contextmanager
def scratch_database(psql: Path) -> Iterator[Database]:
    """A new database holding the package's schema and initial data, dropped on exit."""
    database = Database(f"zabbix_e2e_{uuid.uuid4().hex[:10]}", psql)
    database.run(f"CREATE DATABASE {database.name}")
    try:
        schema = b"".join(
            gzip.decompress((SCHEMA_DIR / name).read_bytes()) for name in SCHEMA_FILES
        )
        database.run("", database.name, stdin=schema)
        yield database
    finally:
        database.run(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")


# --- the API --------------------------------------------------------------------------------


@dataclass
class ZabbixAPI:
    """A JSON-RPC client; 6.0 takes the session id or API token in the `auth` member."""

    url: str
    auth: str | None = None

    def call(self, method: str, params: Any) -> Any:
        body: Json = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        if self.auth is not None and method not in ("apiinfo.version", "user.login"):
            body["auth"] = self.auth
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json-rpc"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: Json = json.loads(response.read())
        if "error" in answer:
            raise HarnessError(f"Zabbix API {method} failed: {answer['error']}")
        return answer["result"]

    def login(self, username: str, password: str) -> ZabbixAPI:
        session = self.call("user.login", {"username": username, "password": password})
        return ZabbixAPI(self.url, str(session))


# --- the processes --------------------------------------------------------------------------


@dataclass
class Zabbix:
    server: Service
    frontend: Service
    trapper_port: int
    sender: Path
    admin: ZabbixAPI

    @property
    def api_url(self) -> str:
        return self.frontend.url + API_PATH

    @property
    def processes(self) -> list[Service]:
        return [self.server, self.frontend]

    def push(self, host: str, key: str, value: str, timeout: float = 20.0) -> None:
        """`zabbix_sender` one value, retried until the server processed it (it refuses values
        of items it has not loaded into its configuration cache yet)."""
        argv = [str(self.sender), "-z", LOCALHOST, "-p", str(self.trapper_port)]
        argv += ["-s", host, "-k", key, "-o", value, "-vv"]

        def send() -> bool:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            found = _PROCESSED.search(done.stdout + done.stderr)
            if found is None or found.group(1) != "1":
                raise _NotProcessed(f"exit {done.returncode}: {done.stdout}{done.stderr}")
            return True

        wait_until(
            send,
            timeout,
            f"zabbix_sender {host} {key}={value} to be processed",
            interval=0.5,
            watch=self.processes,
            retry_on=(_NotProcessed, OSError),
        )

    def alerts(self) -> list[Json]:
        """Zabbix's delivery log of its webhooks (`status` 0 pending, 1 sent, 2 failed)."""
        found: list[Json] = self.admin.call(
            "alert.get",
            {
                "output": ["alertid", "eventid", "p_eventid", "acknowledgeid", "clock",
                           "sendto", "status", "retries", "error"],
                "sortfield": "alertid",
            },
        )  # fmt: skip
        return found

    def delivered(self, problem_event_id: str, count: int) -> list[Json] | None:
        """The `count` webhooks about one problem once Zabbix recorded them all as sent;
        None while fewer exist or one is pending, and a failure when one failed."""
        mine = [a for a in self.alerts() if problem_event_id in (a["eventid"], a["p_eventid"])]
        failed = [a for a in mine if a["status"] == "2"]
        if failed:
            raise HarnessError(f"Zabbix failed to deliver webhooks: {failed}")
        if len(mine) < count or any(a["status"] != "1" for a in mine):
            return None
        return mine

    def problems(self, trigger_id: str) -> list[Json]:
        found: list[Json] = self.admin.call(
            "problem.get",
            {"objectids": [trigger_id], "output": "extend", "recent": True},
        )
        return found


class _NotProcessed(HarnessError):
    pass


def free_trapper_port() -> int:
    """A free port that `ListenPort` accepts (1024-32767, below Linux's ephemeral range)."""
    for _ in range(100):
        port = random.randint(_TRAPPER_PORTS[0], _TRAPPER_PORTS[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOCALHOST, port))
            except OSError:
                continue
            return port
    raise HarnessError(f"no free port in {_TRAPPER_PORTS} for the Zabbix trapper")


def _trapper_listens(port: int) -> bool:
    with socket.create_connection((LOCALHOST, port), timeout=1.0):
        return True


def start_zabbix(stack: Stack, database: Database) -> Zabbix:
    """zabbix_server and the API on free loopback ports, using `database`; returns once the
    trapper listens and `user.login` as Admin works."""
    server_binary, sender, php, _ = require_zabbix()
    directory = stack.directory / "zabbix"
    frontend_conf = directory / "frontend-conf"
    frontend_conf.mkdir(parents=True, exist_ok=True)
    trapper_port = free_trapper_port()
    values = {
        "directory": directory,
        "db_host": POSTGRES_HOST,
        "db_port": POSTGRES_PORT,
        "db_name": database.name,
        "db_user": POSTGRES_USER,
        "listen": LOCALHOST,
        "port": trapper_port,
    }
    server_conf = directory / "zabbix_server.conf"
    server_conf.write_text(_SERVER_CONFIG.format(**values))
    (frontend_conf / "zabbix.conf.php").write_text(_FRONTEND_CONFIG.format(**values))
    # The macros {EVENT.DATE} and {EVENT.TIME} are the server's local time; the bridge's
    # default `zabbix_timezone` is UTC.
    env = clean_environment({"TZ": "UTC"}, drop_prefix="BRIDGE_")
    server = stack.start_portless(
        "zabbix_server",
        Command([str(server_binary), "-f", "-c", str(server_conf)], env),
        lambda: _trapper_listens(trapper_port),
        f"its trapper listens on {LOCALHOST}:{trapper_port}",
        timeout=READY_WITHIN,
    )

    def launch(port: int) -> Command:
        argv = [str(php), "-S", f"{LOCALHOST}:{port}", "-t", str(FRONTEND_DIR)]
        return Command(in_frontend_namespace(argv, frontend_conf), env)

    frontend = stack.start("zabbix_frontend", launch, "/robots.txt", timeout=READY_WITHIN)
    api = ZabbixAPI(frontend.url + API_PATH)
    admin = wait_until(
        lambda: api.login(*ADMIN),
        READY_WITHIN,
        f"the Zabbix API at {api.url} to log Admin in",
        watch=[server, frontend],
        retry_on=(OSError, HarnessError),
    )
    zabbix = Zabbix(server, frontend, trapper_port, sender, admin)
    stack.snapshots["zabbix alert.get"] = lambda: json.dumps(zabbix.alerts(), indent=2)
    return zabbix


def in_frontend_namespace(argv: list[str], conf_dir: Path) -> list[str]:
    """`argv` run in a private mount namespace where /etc/zabbix is `conf_dir`."""
    unshare = require_binary("unshare", install="util-linux")
    flags = ["--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        flags.append("--map-root-user")
    script = f'mount --bind "$0" {FRONTEND_CONFIG_DIR} && exec "$@"'
    return [unshare, *flags, "/bin/sh", "-c", script, str(conf_dir), *argv]


# --- configuration through the API ----------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """A trapper item and a trigger firing while its last value is above 0."""

    host: str
    key: str
    name: str
    trigger_id: str


def add_host(api: ZabbixAPI, host: str, group: str) -> str:
    [group_id] = api.call("hostgroup.create", {"name": group})["groupids"]
    [host_id] = api.call("host.create", {"host": host, "groups": [{"groupid": group_id}]})[
        "hostids"
    ]
    return str(host_id)


def add_trapper_trigger(
    api: ZabbixAPI, host_id: str, host: str, key: str, name: str, priority: int
) -> Trigger:
    api.call(
        "item.create",
        {"hostid": host_id, "name": f"e2e {key}", "key_": key, "type": 2, "value_type": 3},
    )
    [trigger_id] = api.call(
        "trigger.create",
        {
            "description": name,
            "expression": f"last(/{host}/{key})>0",
            "priority": priority,
            "comments": f"e2e: the test pushed a value above 0 to {key}.",
            "tags": [{"tag": "service", "value": "e2e"}],
        },
    )["triggerids"]
    return Trigger(host, key, name, str(trigger_id))


def import_media_type(api: ZabbixAPI, path: Path, name: str) -> str:
    """`configuration.import` of an export file, unchanged; the id of media type `name`."""
    params = {
        "format": "yaml",
        "rules": {"mediaTypes": {"createMissing": True, "updateExisting": True}},
        "source": path.read_text(),
    }
    try:
        imported = api.call("configuration.import", params)
    except HarnessError as exc:
        version = api.call("apiinfo.version", [])
        raise HarnessError(f"{path} does not import into Zabbix {version}: {exc}") from None
    if imported is not True:
        raise HarnessError(f"configuration.import of {path} answered {imported!r}")
    found = api.call("mediatype.get", {"filter": {"name": name}, "output": ["mediatypeid"]})
    if len(found) != 1:
        raise HarnessError(f"importing {path} made no media type called {name!r}: {found}")
    return str(found[0]["mediatypeid"])


def add_user(
    api: ZabbixAPI, username: str, password: str, medias: list[Json], name: str = ""
) -> str:
    """A super admin (API access, reads every host) with `medias`."""
    first, _, last = name.partition(" ")
    [user_id] = api.call(
        "user.create",
        {
            "username": username,
            "passwd": password,
            "name": first,
            "surname": last,
            "roleid": SUPER_ADMIN_ROLE,
            "usrgrps": [{"usrgrpid": ADMINISTRATORS_GROUP}],
            "medias": medias,
        },
    )["userids"]
    return str(user_id)


def media(media_type_id: str, send_to: str) -> Json:
    """A user media active all week for every severity."""
    return {
        "mediatypeid": media_type_id,
        "sendto": send_to,
        "active": 0,
        "severity": ALL_SEVERITIES,
        "period": "1-7,00:00-24:00",
    }


def add_action(api: ZabbixAPI, name: str, media_type_id: str, user_id: str, trigger_id: str) -> str:
    """A trigger action messaging `user_id` through the media type on problem, recovery and
    update of one trigger, with the media type's own message templates (config/zabbix/README.md
    step 5)."""
    message = {
        "operationtype": 0,
        "opmessage": {"default_msg": 1, "mediatypeid": media_type_id},
        "opmessage_usr": [{"userid": user_id}],
    }
    [action_id] = api.call(
        "action.create",
        {
            "name": name,
            "eventsource": 0,
            "status": 0,
            "esc_period": "1h",
            "filter": {
                "evaltype": 0,
                "conditions": [{"conditiontype": 2, "operator": 0, "value": trigger_id}],
            },
            "operations": [{**message, "esc_step_from": 1, "esc_step_to": 1}],
            "recovery_operations": [message],
            "update_operations": [message],
        },
    )["actionids"]
    return str(action_id)


def api_token(api: ZabbixAPI, name: str, user_id: str) -> str:
    """A new API token of `user_id` (`token.create`, then `token.generate`)."""
    [token_id] = api.call("token.create", {"name": name, "userid": user_id})["tokenids"]
    [generated] = api.call("token.generate", [token_id])
    return str(generated["token"])
