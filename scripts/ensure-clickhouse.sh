#!/bin/sh
# Installs Debian's clickhouse-server and clickhouse-client for the ClickHouse sink tests when
# either is missing (tests start their own private server; nothing is started here).
# Idempotent: a no-op (no network) when both are already installed.
set -eu
if command -v clickhouse-server >/dev/null 2>&1 && command -v clickhouse-client >/dev/null 2>&1 \
	&& [ -f /etc/clickhouse-server/config.xml ]; then
	exit 0
fi
"$(dirname "$0")/apt-install.sh" ensure-clickhouse clickhouse-server clickhouse-client
# The package may start its own service on 9000; the tests do not need it.
if command -v systemctl >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then systemctl disable --now clickhouse-server >/dev/null 2>&1 || true
	else sudo systemctl disable --now clickhouse-server >/dev/null 2>&1 || true; fi
fi
if ! command -v clickhouse-server >/dev/null 2>&1 || [ ! -f /etc/clickhouse-server/config.xml ]; then
	echo "ensure-clickhouse: apt-get install finished but clickhouse-server or its config is still missing" >&2
	exit 1
fi
