#!/bin/sh
# Installs Debian's chromium for the web UI's browser tests when it is missing. Idempotent: a
# no-op (no network) when /usr/bin/chromium is already there.
set -eu
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "ensure-chromium: /usr/bin/chromium is missing and neither root nor sudo is available to install it (apt-get install chromium)" >&2
		exit 1
	fi
fi
echo "ensure-chromium: installing Debian's chromium (apt-get install chromium)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
	echo "ensure-chromium: apt-get install chromium finished but /usr/bin/chromium is still missing" >&2
	exit 1
fi
