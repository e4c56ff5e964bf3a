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

# `--with-browser` (npm test) also provides a software Vulkan adapter (Mesa's lavapipe ≥ 24) so the WebGPU code paths
# are tested for real without a GPU. Debian 12's own Mesa (22.3) is refused by Dawn: take bookworm-backports'.
if [ "${1:-}" = "--with-browser" ]; then
  mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  if [ -z "$mesa" ] || [ "${mesa%%.*}" -lt 24 ] 2>/dev/null || ! dpkg-query -W -f='${Status}' libvulkan1 2>/dev/null | grep -q installed; then
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    if [ "$codename" = "bookworm" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "[setup] installing Mesa's lavapipe from bookworm-backports (a software WebGPU adapter for the tests)" >&2
      if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > /etc/apt/sources.list.d/camflow-backports.sources
      fi
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1) >&2 \
        || echo "[setup] could not install lavapipe: the WebGPU tests will be skipped, each saying why" >&2
    else
      echo "[setup] no Mesa >= 24 lavapipe here and cannot install it (needs Debian 12 and root): the WebGPU tests will be skipped, each saying why" >&2
    fi
  fi
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "[setup] redis-server not found: installing it from the OS packages" >&2
  apt_install redis-server || { echo "[setup] cannot install redis-server here: install Redis >= 6.2 (package redis-server) and retry" >&2; exit 1; }
fi
