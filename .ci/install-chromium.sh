#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver from the machine's Debian packages, for the
# operator console's browser tests (COMMUCAT_TEST_CHROMEDRIVER). Does nothing when both are
# already present. Needs root (or sudo) and an apt source.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver
