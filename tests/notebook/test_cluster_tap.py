"""After sb.connect to RabbitMQ, a `sandbox run` process's calls and events reach sb.trace."""

import json

OUTSIDE = """
from sandbox.events import EventDispatcher
from sandbox.rpc import rpc


class Outside:
    name = "outside"

    dispatch = EventDispatcher()

    @rpc
    def announce(self, what):
        self.dispatch("announced", {"what": what})
        return what.upper()
"""

WATCH = """
import json, time

def wait_until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)

assert sb.rpc.outside.announce("news") == "NEWS"
wait_until(lambda: any(r.kind == "EVENT" and r.outside for r in sb.trace))
wait_until(lambda: any(r.kind == "RPC" and r.status == "ok" for r in sb.trace))
print(json.dumps([[r.kind, r.target, r.status, r.outside, r.summary()] for r in sb.trace]))
"""


def test_the_cluster_s_traffic_is_recorded_after_connect(vhost_uri, cli, sandbox_kernel):
    proc = cli("run", "outside", "--broker", vhost_uri, modules={"outside": OUTSIDE})
    proc.wait_for_line("started service outside", timeout=60)
    sandbox_kernel.run(f'sb.connect("{vhost_uri}")')
    out = sandbox_kernel.run(WATCH, timeout=90).stdout.strip().splitlines()
    records = json.loads(out[-1])
    rpc = [r for r in records if r[0] == "RPC"]
    events = [r for r in records if r[0] == "EVENT"]
    assert [r[1:4] for r in rpc] == [["outside.announce", "ok", True]]
    assert [r[1:4] for r in events] == [["outside.events:announced", "ok", True]]
    assert rpc[0][4].endswith("[outside]") and "outside.announce" in events[0][4]
    sandbox_kernel.run('sb.connect("memory://")')
