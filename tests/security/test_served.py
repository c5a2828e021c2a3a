"""The process the attacks run against answers as a deployed service does."""

import requests

from sandbox.standalone.rpc import ClusterRpcProxy


def test_a_served_target_answers_http(serve):
    served = serve()
    assert requests.get(f"{served.url}/ping", timeout=10).text == "pong"


def test_a_served_target_answers_rpc_on_rabbitmq(serve, rabbitmq_uri):
    serve(rabbitmq_uri)
    with ClusterRpcProxy({"AMQP_URI": rabbitmq_uri}, timeout=10) as cluster:
        assert cluster.target.echo("hi") == "hi"
