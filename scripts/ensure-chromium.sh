#!/usr/bin/env bash
# Makes sure a headless Chromium exists for the real-browser widget test (Debian's package;
# never `playwright install`, which downloads a browser build). Never fatal: without it the
# browser test skips and says why.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }
fi
command -v chromium >/dev/null 2>&1 && exit 0
echo "chromium is not available: the real-browser widget test will be skipped" >&2
exit 0
