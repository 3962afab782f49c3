#!/bin/sh
# Installs Debian packages with apt-get, as root or through sudo; the ensure-*.sh scripts call
# it only when what they need is missing. Usage: apt-install.sh WHO PACKAGE...
set -eu
who=$1
shift
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "$who: $* missing and neither root nor sudo is available to install it (apt-get install $*)" >&2
		exit 1
	fi
fi
echo "$who: installing Debian's $*" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
