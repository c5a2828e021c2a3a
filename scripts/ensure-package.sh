#!/usr/bin/env bash
# ensure-package.sh COMMAND PACKAGE: installs Debian's PACKAGE with apt when COMMAND is missing
# (as root where apt exists; the package lists are refreshed once if the first try fails).
# Exits 0 when COMMAND is there afterwards. The ensure-*.sh scripts and the Makefile use it.
set -u
present() { command -v "$1" >/dev/null 2>&1; }
present "$1" && exit 0
if present apt-get && [ "$(id -u)" = 0 ]; then
    echo "installing $2 with apt"
    install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1; }
    install "$2" || { apt-get update -q >/dev/null 2>&1 && install "$2"; }
fi
present "$1"
