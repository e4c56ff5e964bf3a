#!/usr/bin/env bash
# The benchmark's peer: the seed's PyTorch code on Debian's python3-torch and python3-opencv (into /usr/bin/python3).
set -euo pipefail
if ! /usr/bin/python3 -c 'import torch, cv2' >/dev/null 2>&1; then
  echo "[bench] installing python3-torch and python3-opencv from the OS packages" >&2
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-opencv) >&2 \
      || echo "[bench] could not install them: the peer column will be empty" >&2
  else
    echo "[bench] not root or no apt-get: install python3-torch and python3-opencv for the peer column" >&2
  fi
fi
