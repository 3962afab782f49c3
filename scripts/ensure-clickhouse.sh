#!/bin/sh
# Installs Debian's clickhouse-server and clickhouse-client for the ClickHouse sink tests when
# either is missing (tests start their own private server; nothing is started here).
# Idempotent: a no-op (no network) when both are already installed.
set -eu
if command -v clickhouse-server >/dev/null 2>&1 && command -v clickhouse-client >/dev/null 2>&1 \
	&& [ -f /etc/clickhouse-server/config.xml ]; then
	exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "ensure-clickhouse: clickhouse-server is missing and neither root nor sudo is available to install it (apt-get install clickhouse-server clickhouse-client)" >&2
		exit 1
	fi
fi
echo "ensure-clickhouse: installing Debian's clickhouse-server and clickhouse-client" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
# The package may start its own service on 9000; the tests do not need it.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now clickhouse-server >/dev/null 2>&1 || true; fi
if ! command -v clickhouse-server >/dev/null 2>&1 || [ ! -f /etc/clickhouse-server/config.xml ]; then
	echo "ensure-clickhouse: apt-get install finished but clickhouse-server or its config is still missing" >&2
	exit 1
fi
