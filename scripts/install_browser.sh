#!/usr/bin/env bash
# Browser tests' system packages: headless Chromium (Debian `chromium`) and a CJK font (`fonts-noto-cjk`) so
# Chinese labels render in screenshots. Idempotent: packages already installed are skipped. Non-interactive.
# Uses sudo only when not root. The Python driver (playwright, a dev dependency in uv.lock) drives this
# system Chromium through executable_path=/usr/bin/chromium, so `playwright install` (a CDN download) is
# never needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(chromium fonts-noto-cjk)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { echo "需要 apt-get（Debian/Ubuntu）来安装：${missing[*]}" >&2; exit 1; }
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "非 root 且没有 sudo：请手动安装 ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "安装系统包：${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "系统包已安装：${PACKAGES[*]}"
fi

command -v chromium >/dev/null || { echo "安装后仍找不到 chromium" >&2; exit 1; }
chromium --version
# the driver comes with the locked environment (scripts/install.sh); check it imports
if [ -x .venv/bin/python ]; then
  .venv/bin/python -c "import playwright.sync_api; print('playwright', __import__('importlib.metadata').metadata.version('playwright'))"
fi
