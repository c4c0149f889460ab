#!/usr/bin/env bash
# Headless browser for tests/integration/test_gallery_page_browser.py.
#
# Debian's `chromium` package, driven by Playwright for Python (the `test`
# extra) through executable_path=/usr/bin/chromium. Never `playwright install`:
# that downloads a browser build of its own, which this project's machines
# (and many CI networks) cannot fetch.
#
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or sudo)
# for apt-get; without them it says so and exits 0, and the browser test skips
# with that reason.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  echo "install_browser: $CHROMIUM present ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "install_browser: not root and no passwordless sudo; skipping (browser tests will skip)" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-liberation: readable text in screenshots (Chromium has no fonts of its own).
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "install_browser: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
