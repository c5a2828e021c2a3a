#!/usr/bin/env bash
# Makes sure a redis-server answers on 127.0.0.1:6379 for the nameko-redis tests (tests/compat):
# installs Debian's redis-server with apt when missing, starts it when stopped. Never fatal:
# without a server the redis tests skip and say why.
set -u
port_open() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
port_open && exit 0
if bash "$(dirname "$0")/ensure-package.sh" redis-server redis-server; then
    echo "starting redis-server"
    # A throwaway server for tests: loopback only, nothing saved to disk.
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no \
        >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do port_open && exit 0; sleep 1; done
fi
echo "redis-server is not available: the nameko-redis tests will be skipped" >&2
exit 0
