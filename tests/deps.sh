#!/bin/bash
# Installs what only the test suite needs: Node.js and npm where the machine
# has none (a Node.js from elsewhere, e.g. NodeSource, bundles npm and
# conflicts with Debian's npm package, so only what is missing is installed;
# with sudo unless running as root), then the Kaitai Struct compiler that
# tests/kaitai.sh uses, from tests/kaitai/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
npm ci --prefix tests/kaitai --no-audit --no-fund
