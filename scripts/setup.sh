#!/usr/bin/env bash
# Installs what camflow needs on a fresh machine: npm packages and redis-server. Idempotent and quiet when done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reinstall when any manifest or the lock file changed since the last install.
stamp=node_modules/.camflow-setup
want=$(cat package.json packages/*/package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing npm packages" >&2
  npm install --no-audit --no-fund --loglevel=error >&2
  want=$(cat package.json packages/*/package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-64)
  echo "$want" > "$stamp"
fi

# OS packages: redis-server (tests and `camflow dev`), chromium (the viewer's browser tests, headless).
apt_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >&2
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >&2
  else
    return 1
  fi
}
# `--with-browser` (npm test): the viewer's tests need a browser; the demo does not.
if [ "${1:-}" = "--with-browser" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 && [ -z "${CHROMIUM_PATH:-}" ]; then
  echo "[setup] chromium not found: installing Debian's chromium (the viewer is tested in a real browser)" >&2
  apt_install chromium || { echo "[setup] cannot install chromium here: install it (package chromium) or set CHROMIUM_PATH, and retry" >&2; exit 1; }
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "[setup] redis-server not found: installing it from the OS packages" >&2
  apt_install redis-server || { echo "[setup] cannot install redis-server here: install Redis >= 6.2 (package redis-server) and retry" >&2; exit 1; }
fi
