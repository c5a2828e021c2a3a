#!/usr/bin/env bash
# Makes sure a RabbitMQ answers on 127.0.0.1:5672 for the AMQP tests: installs it with apt when
# missing, starts it when stopped. Never fatal: without a broker the RabbitMQ tests skip and say why.
set -u
port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
api_open() { (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null; }
# The AMQP tests make a vhost per test through the management API.
enable_management() {
    api_open && return 0
    command -v rabbitmq-plugins >/dev/null 2>&1 || return 0
    echo "enabling rabbitmq_management"
    rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || return 0
    for _ in $(seq 1 30); do api_open && return 0; sleep 1; done
}
port_open && { enable_management; exit 0; }
if bash "$(dirname "$0")/ensure-package.sh" rabbitmq-server rabbitmq-server; then
    echo "starting rabbitmq-server"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do port_open && { enable_management; exit 0; }; sleep 1; done
fi
echo "RabbitMQ is not available: the RabbitMQ variants of the AMQP tests will be skipped" >&2
exit 0
