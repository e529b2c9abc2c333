"""A private Nagios Core 4 for the end-to-end tests, notifying the bridge with the shipped sender.

Everything lives in the test's directory: `nagios.cfg` (1 s interval length, checks every
second, no state retention, external command pipe), the check results, the status and log
files. Its `cfg_file`s are the SHIPPED `config/nagios/bridge.cfg`, unchanged, and a test
objects file: a contact using the shipped `bridge-contact` template whose `_WEBHOOK_URL` is
the test bridge, one host and one service.

The shipped commands run `/usr/local/bin/bridge-notify`, its documented install path. Rather
than install anything on the machine, Nagios runs in a private mount namespace
(`unshare --mount`) in which a directory holding only a link to the checkout's
`config/nagios/bridge-notify` is mounted over /usr/local/bin.

Check results come from the real `check_dummy` plugin, fed with the exit code and output the
test writes to a state file per object, followed by a forced check of that object
(`Nagios.set_service_state`, `Nagios.set_host_state`). Acknowledgements go through the
external command file, as an operator's would.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import REPO
from tests.e2e.harness import (
    Command,
    HarnessError,
    Service,
    Stack,
    clean_environment,
    require_binary,
    wait_until,
)

INSTALL = "nagios4-core monitoring-plugins-basic"
NAGIOS_BINARY = Path("/usr/sbin/nagios4")
CHECK_DUMMY = Path("/usr/lib/nagios/plugins/check_dummy")
SHIPPED_CONFIG = REPO / "config" / "nagios" / "bridge.cfg"
SHIPPED_SENDER = REPO / "config" / "nagios" / "bridge-notify"
SENDER_INSTALL_DIR = "/usr/local/bin"  # where the shipped commands expect bridge-notify
SHIPPED_TEMPLATE = "bridge-contact"

HOST = "e2e-web-01"
SERVICE = "HTTP"
CONTACT = "e2e-bridge"
WEBHOOK_PATH = "/api/v1/webhooks/nagios"
READY_WITHIN = 20.0
_LOG_TAIL_LINES = 150

# Exit codes of a Nagios plugin.
OK, WARNING, CRITICAL = 0, 1, 2

_CHECK_SCRIPT = f"""#!/bin/sh
# e2e-check STATE_FILE: the real check_dummy, with the exit code (line 1) and the output
# (line 2) the test wrote to STATE_FILE.
{{ read -r code; read -r output; }} < "$1"
exec {CHECK_DUMMY} "$code" "$output"
"""


def require_nagios() -> Path:
    """The Nagios binary; fails the test (never skips) when Nagios or its plugins are missing."""
    for needed in (NAGIOS_BINARY, CHECK_DUMMY):
        if not os.access(needed, os.X_OK):
            raise HarnessError(
                f"{needed} is missing; the Nagios e2e test drives the real Nagios Core 4: "
                f"install it with `apt-get install {INSTALL}`"
            )
    return NAGIOS_BINARY


@dataclass(frozen=True)
class NagiosFiles:
    """The paths of one private Nagios instance, all under `directory`."""

    directory: Path

    @property
    def main_config(self) -> Path:
        return self.directory / "nagios.cfg"

    @property
    def objects(self) -> Path:
        return self.directory / "e2e-objects.cfg"

    @property
    def log(self) -> Path:
        return self.directory / "nagios.log"

    @property
    def status(self) -> Path:
        return self.directory / "status.dat"

    @property
    def command_file(self) -> Path:
        return self.directory / "rw" / "nagios.cmd"

    @property
    def check_script(self) -> Path:
        return self.directory / "e2e-check"

    @property
    def sender_dir(self) -> Path:
        """Mounted over /usr/local/bin inside Nagios' mount namespace."""
        return self.directory / "usr-local-bin"

    def state(self, check: str) -> Path:
        return self.directory / "state" / check


def main_config(files: NagiosFiles) -> str:
    d = files.directory
    settings = {
        "log_file": files.log,
        "cfg_file": SHIPPED_CONFIG,
        "object_cache_file": d / "objects.cache",
        "precached_object_file": d / "objects.precache",
        "status_file": files.status,
        "status_update_interval": 1,
        # Inside the namespace the test's user is root (CI runs as root anyway): Nagios runs
        # as root only when told so.
        "nagios_user": "root",
        "nagios_group": "root",
        "check_external_commands": 1,
        "command_check_interval": -1,
        "command_file": files.command_file,
        "query_socket": d / "rw" / "nagios.qh",
        "lock_file": d / "nagios.lock",
        "temp_file": d / "nagios.tmp",
        "temp_path": d / "tmp",
        "check_result_path": d / "checkresults",
        "check_result_reaper_frequency": 1,
        "retain_state_information": 0,
        "use_retained_program_state": 0,
        "use_retained_scheduling_info": 0,
        "use_syslog": 0,
        "log_rotation_method": "n",
        "log_notifications": 1,
        "log_external_commands": 1,
        "log_initial_states": 1,
        "log_service_retries": 1,
        "log_host_retries": 1,
        "interval_length": 1,
        "max_service_check_spread": 1,
        "max_host_check_spread": 1,
        "service_inter_check_delay_method": "n",
        "host_inter_check_delay_method": "n",
        "enable_notifications": 1,
        "enable_flap_detection": 0,
        "enable_environment_macros": 1,  # the shipped commands use the environment mode
        "illegal_macro_output_chars": "`~$&|'\"<>",  # the Debian default
        "check_for_updates": 0,
        "bare_update_check": 1,
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.insert(2, f"cfg_file={files.objects}")
    return "\n".join(lines) + "\n"


def objects_config(files: NagiosFiles, webhook_url: str) -> str:
    # Semicolons start comments in Nagios object files: none below but in comments.
    every_day = "\n".join(
        f"    {day} 00:00-24:00"
        for day in ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
    checked = (
        """    max_check_attempts      1
    check_interval          1
    retry_interval          1
    active_checks_enabled   1
    check_period            24x7
    notifications_enabled   1
    notification_interval   0
    notification_period     24x7
    contacts                """
        + CONTACT
    )
    return f"""; e2e objects: the shipped `{SHIPPED_TEMPLATE}` template aimed at the test bridge
define timeperiod {{
    timeperiod_name 24x7
    alias           around the clock
{every_day}
}}

define command {{
    command_name    e2e-state
    command_line    {files.check_script} {files.directory}/state/$ARG1$
}}

define contact {{
    use             {SHIPPED_TEMPLATE}
    contact_name    {CONTACT}
    alias           alert-bridge under test
    _WEBHOOK_URL    {webhook_url}
}}

define host {{
    host_name               {HOST}
    alias                   e2e web server
    address                 127.0.0.1
    check_command           e2e-state!host
    notification_options    d,u,r
{checked}
}}

define service {{
    host_name               {HOST}
    service_description     {SERVICE}
    check_command           e2e-state!http
    notification_options    w,u,c,r
{checked}
}}
"""


def in_sender_namespace(argv: list[str], files: NagiosFiles) -> list[str]:
    """`argv` run in a private mount namespace where /usr/local/bin holds only bridge-notify."""
    unshare = require_binary("unshare", install="util-linux")
    flags = ["--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        flags.append("--map-root-user")
    script = f'mount --bind "$0" {SENDER_INSTALL_DIR} && exec "$@"'
    return [unshare, *flags, "/bin/sh", "-c", script, str(files.sender_dir), *argv]


def status_blocks(text: str) -> list[tuple[str, dict[str, str]]]:
    """The blocks of a Nagios `status.dat` (`hoststatus {`, `key=value` lines, `}`)."""
    blocks: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.endswith("{"):
            blocks.append((line[:-1].strip(), {}))
        elif "=" in line and blocks:
            key, _, value = line.partition("=")
            blocks[-1][1][key] = value
    return blocks


@dataclass(frozen=True)
class Nagios:
    process: Service
    files: NagiosFiles

    def set_host_state(self, code: int, output: str) -> None:
        """The host's checks return `code` and `output` from now on, starting at once."""
        write_state(self.files, "host", code, output)
        # Forced, not left to the schedule: Nagios 4.4.6 sometimes stops rescheduling the
        # host's regular check after a service problem triggered an on-demand host check
        # (`next_check` stays in the past), and a forced check is what an operator would do.
        self.external_command(f"SCHEDULE_FORCED_HOST_CHECK;{HOST};{int(time.time())}")

    def set_service_state(self, code: int, output: str) -> None:
        """The service's checks return `code` and `output` from now on, starting at once."""
        write_state(self.files, "http", code, output)
        self.external_command(f"SCHEDULE_FORCED_SVC_CHECK;{HOST};{SERVICE};{int(time.time())}")

    def external_command(self, command: str, timeout: float = 10.0) -> None:
        """Write `[now] COMMAND` to the external command pipe (Nagios reads it at once)."""
        line = f"[{int(time.time())}] {command}\n".encode()

        def write() -> bool:
            # Non-blocking: ENXIO (no reader yet) is retried instead of hanging the test.
            fd = os.open(self.files.command_file, os.O_WRONLY | os.O_NONBLOCK)
            try:
                return os.write(fd, line) == len(line)
            finally:
                os.close(fd)

        wait_until(
            write,
            timeout,
            f"Nagios to accept {command!r} on {self.files.command_file}",
            watch=[self.process],
        )

    def log_tail(self) -> str:
        return log_tail(self.files)

    def failed_notifications(self) -> list[str]:
        """Nagios' report of each notification command that exited non-zero, with its stderr
        (`wproc: NOTIFY job ... exited with return code 1`, then indented detail lines)."""
        lines = self.files.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "wproc: NOTIFY job" in line or "wproc:   " in line]


def log_tail(files: NagiosFiles, lines: int = _LOG_TAIL_LINES) -> str:
    """The end of Nagios' own log (its stdout says little once it runs)."""
    try:
        kept = files.log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"<cannot read {files.log}: {exc}>"
    return "\n".join(kept) if kept else "<empty>"


def write_state(files: NagiosFiles, check: str, code: int, output: str) -> None:
    """Replaced atomically, so that a check never reads half a file."""
    path = files.state(check)
    partial = path.with_suffix(".new")
    partial.write_text(f"{code}\n{output}\n")
    os.replace(partial, path)


def has_checked(files: NagiosFiles) -> bool:
    """True once Nagios has checked the host and the service at least once."""
    try:
        blocks = status_blocks(files.status.read_text(errors="replace"))
    except FileNotFoundError:
        return False
    kinds = {kind for kind, fields in blocks if fields.get("has_been_checked") == "1"}
    return {"hoststatus", "servicestatus"} <= kinds


def _prepare(files: NagiosFiles, webhook_url: str) -> None:
    for sub in ("rw", "tmp", "checkresults", "state", "usr-local-bin"):
        (files.directory / sub).mkdir(parents=True, exist_ok=True)
    files.check_script.write_text(_CHECK_SCRIPT)
    files.check_script.chmod(0o755)
    if not os.access(SHIPPED_SENDER, os.X_OK):
        raise HarnessError(f"{SHIPPED_SENDER} is not executable (the install step says 0755)")
    (files.sender_dir / "bridge-notify").symlink_to(SHIPPED_SENDER)
    files.main_config.write_text(main_config(files))
    files.objects.write_text(objects_config(files, webhook_url))


def verify(binary: Path, files: NagiosFiles, env: dict[str, str]) -> None:
    """`nagios4 -v`: the shipped config plus ours must be valid before anything starts."""
    argv = in_sender_namespace([str(binary), "-v", str(files.main_config)], files)
    checked = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env=env)
    if checked.returncode != 0:
        raise HarnessError(
            f"`nagios4 -v` rejected the config (exit {checked.returncode}):\n"
            f"{checked.stdout}{checked.stderr}\n--- {files.main_config} ---\n"
            f"{files.main_config.read_text()}\n--- {files.objects} ---\n{files.objects.read_text()}"
        )


def start_nagios(stack: Stack, bridge: Service) -> Nagios:
    """A private Nagios whose only contact is the bridge, started after the bridge, with the
    host UP and the service OK; fails the test when Nagios is not installed."""
    binary = require_nagios()
    files = NagiosFiles(stack.directory / "nagios")
    _prepare(files, f"{bridge.url}{WEBHOOK_PATH}")
    env = clean_environment({}, drop_prefix="BRIDGE_")  # no developer's BRIDGE_TOKEN
    verify(binary, files, env)

    write_state(files, "host", OK, "host is up")
    write_state(files, "http", OK, "HTTP OK: 200 in 0.01 s")
    stack.snapshots["nagios log"] = lambda: log_tail(files)
    stack.snapshots["nagios status"] = lambda: files.status.read_text(errors="replace")

    def ready() -> bool:
        pipe = files.command_file
        return pipe.exists() and stat.S_ISFIFO(pipe.stat().st_mode) and has_checked(files)

    argv = in_sender_namespace([str(binary), str(files.main_config)], files)
    process = stack.start_portless(
        "nagios",
        Command(argv, env),
        ready,
        "its command pipe is open and the host and the service were checked once",
        timeout=READY_WITHIN,
    )
    return Nagios(process, files)
