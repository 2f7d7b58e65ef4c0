#!/usr/bin/env bash
# Install napari-kernelspec and everything its tests need, on a fresh Debian machine.
#   - Debian packages: Xvfb + Mesa GL + the Qt xcb libraries (napari under a virtual screen),
#     Chromium (the report tests open the report in a real browser), python3-venv.
#   - a virtual environment in .venv with the package installed in editable mode, with the
#     `testing` extra (PyQt6, pytest, pytest-qt, npe2, ruff, playwright). Playwright drives the
#     Debian chromium above (executable_path): no `playwright install` browser download.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 fonts-dejavu-core chromium
)
PYTHON=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1; then
  if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c "import ensurepip" 2>/dev/null; then
    SYSTEM_PACKAGES+=(python3-venv)
  fi
  missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  echo "setup: not a Debian system; install Xvfb, Mesa GL and Chromium yourself for the GUI and browser tests" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing napari-kernelspec with its test extras into .venv (torch is large: a few minutes)"
.venv/bin/python -m pip install -q -e ".[testing]"
echo "setup: done. Try: .venv/bin/kernelspec models"
