#!/usr/bin/env bash
# deps.sh: installs the Debian 12 packages mqchat needs to build, test and run.
# Only what is missing is installed; when nothing is missing apt is not touched at all.
set -euo pipefail

PACKAGES=(build-essential cmake pkg-config mosquitto mosquitto-dev libmosquitto-dev
          mosquitto-clients libsqlite3-dev libjansson-dev libssl-dev sqlite3
          python3-paho-mqtt chromium tmux postgresql libpq-dev)
# Node.js and npm (MQTT.js for the client-library tests, `npm ci` from package-lock.json):
# Debian's, unless the machine already has a node and npm of its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "deps: installing missing packages: ${missing[*]}" >&2
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
