#!/usr/bin/env bash
# Makes sure a headless Chromium exists for the real-browser widget test (Debian's package;
# never `playwright install`, which downloads a browser build). Never fatal: without it the
# browser test skips and says why.
set -u
bash "$(dirname "$0")/ensure-package.sh" chromium chromium && exit 0
echo "chromium is not available: the real-browser widget test will be skipped" >&2
exit 0
