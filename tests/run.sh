#!/usr/bin/env bash
# The test command: installs what the tests need, starts PostgreSQL if it is down, then runs
# lint (ruff), types (mypy --strict) and every test: pure, HTTP + DB on SQLite and PostgreSQL,
# and end-to-end with the real Prometheus, Alertmanager, Nagios and Zabbix. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v nagios4 >/dev/null || missing+=(nagios4-core)
[ -x /usr/lib/nagios/plugins/check_dummy ] || missing+=(monitoring-plugins-basic)
command -v zabbix_server >/dev/null || missing+=(zabbix-server-pgsql)
command -v zabbix_sender >/dev/null || missing+=(zabbix-sender)
[ -d /usr/share/zabbix ] || missing+=(zabbix-frontend-php)
php -m 2>/dev/null | grep -i pgsql >/dev/null || missing+=(php-pgsql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  deadline=$((SECONDS + 60))
  until pg_isready -h 127.0.0.1 -p 5432 -q; do
    if [ $SECONDS -ge $deadline ]; then echo "PostgreSQL did not start" >&2; exit 1; fi
    sleep 0.5
  done
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
ruff check .
ruff format --check .
mypy
python3 -m pytest "$@"
