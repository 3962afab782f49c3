#!/bin/sh
# Installs Debian's chromium for the web UI's browser tests when it is missing. Idempotent: a
# no-op (no network) when /usr/bin/chromium is already there.
set -eu
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
"$(dirname "$0")/apt-install.sh" ensure-chromium chromium
if [ ! -x /usr/bin/chromium ]; then
	echo "ensure-chromium: apt-get install chromium finished but /usr/bin/chromium is still missing" >&2
	exit 1
fi
