"""Every class sandbox defines has a name of its own, so that a name in a traceback, a log
line or the docs points at one class. (Nameko's names for them are aliases: assignments.)"""

import ast
from collections import defaultdict
from pathlib import Path

import sandbox

PACKAGE = Path(sandbox.__file__).parent


def defined_classes() -> dict[str, list[str]]:
    where = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return where


def test_no_two_classes_share_a_name():
    classes = defined_classes()
    assert len(classes) > 100  # the walk found the package
    shared = {name: places for name, places in classes.items() if len(places) > 1}
    assert shared == {}


def test_nameko_s_documented_names_still_import():
    from sandbox.amqp.publish import AmqpPublisher, Publisher
    from sandbox.messaging import Consumer
    from sandbox.messaging import Publisher as MessagingPublisher
    from sandbox.rpc import Client, RpcClient

    assert Publisher is AmqpPublisher
    assert Client is RpcClient
    assert Consumer.__name__ == "Consumer" and MessagingPublisher.__name__ == "Publisher"
