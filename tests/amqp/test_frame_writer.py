import socket
import time
from types import SimpleNamespace

import eventlet
import eventlet.greenio

from sandbox.amqp import frame_writer
from sandbox.amqp.frame_writer import SOON_LIMIT, FrameWriter
from sandbox.runtime import get_runtime
from tests.polling import wait_until

HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"


def test_a_batch_goes_out_in_one_write_and_frames_keep_their_order():
    writes = []
    connection = SimpleNamespace(frame_max=131072, bytes_sent=0)
    writer = FrameWriter(connection, SimpleNamespace(write=lambda data: writes.append(bytes(data))))

    writer.send(b"alone")
    with writer.batch():
        writer.send(b"reply")
        writer.send(b"ack")
        assert writes == [b"alone"]
    assert writes == [b"alone", b"replyack"]

    # A frame py-amqp encodes (a heartbeat) goes after what waits in the batch.
    with writer.batch():
        writer.send(b"reply")
        writer(8, 0, None, b"", None)
    assert writes == [b"alone", b"replyack", b"reply", HEARTBEAT]


def test_what_is_sent_soon_inside_a_batch_goes_out_with_it(monkeypatch):
    spawned = []
    monkeypatch.setattr(eventlet, "spawn_n", lambda *args: spawned.append(args))
    writes = []
    connection = SimpleNamespace(frame_max=131072, bytes_sent=0)
    writer = FrameWriter(connection, SimpleNamespace(write=lambda data: writes.append(bytes(data))))

    with writer.batch():
        writer.send(b"reply")
        writer.send_soon(b"ack")
    assert writes == [b"replyack"]
    assert spawned == []  # no flush at the end of the turn: nothing waits for it

    writer.send_soon(b"ack")
    writer.send_soon(b"ack")
    assert len(spawned) == 1  # one flush for the turn's acks
    assert writes == [b"replyack"]


def test_batches_that_end_soon_go_out_together_at_the_end_of_the_turn(monkeypatch):
    # However long a busy machine keeps this turn from its end.
    monkeypatch.setattr(frame_writer, "SOON_LIMIT", 60)
    writes = []
    connection = SimpleNamespace(frame_max=131072, bytes_sent=0)
    writer = FrameWriter(connection, SimpleNamespace(write=lambda data: writes.append(bytes(data))))

    def reply(number):
        with writer.batch(soon=True):
            writer.send(b"reply%d" % number)
            writer.send(b"ack%d" % number)

    def turn():
        for number in range(3):
            reply(number)
        assert writes == []  # the turn is not over

    get_runtime().call(turn)
    wait_until(lambda: writes == [b"reply0ack0reply1ack1reply2ack2"])
    # A write that cannot wait takes what waits for the end of the turn with it, first.
    get_runtime().call(lambda: (reply(3), writer.send(b"now")))
    assert writes[1:] == [b"reply3ack3now"]


def test_a_batch_waits_for_the_end_of_the_turn_no_longer_than_a_moment():
    writes = []
    connection = SimpleNamespace(frame_max=131072, bytes_sent=0)
    writer = FrameWriter(connection, SimpleNamespace(write=lambda data: writes.append(bytes(data))))

    def turn():
        with writer.batch(soon=True):
            writer.send(b"quick")
        busy_until = time.monotonic() + 2 * SOON_LIMIT
        while time.monotonic() < busy_until:  # a worker that takes its time, holding the hub
            pass
        assert writes == []
        with writer.batch(soon=True):
            writer.send(b"slow")
        # The first reply has waited long enough: both go now, not at the end of the turn.
        assert writes == [b"quickslow"]

    get_runtime().call(turn)


def test_a_plain_thread_writes_when_the_hub_does_not_and_the_hub_writes_what_it_left():
    runtime = get_runtime()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        green = runtime.call(eventlet.greenio.GreenSocket, ours)  # non-blocking from now on
        transport = SimpleNamespace(write=green.sendall, plain_socket=green.fd)
        writer = FrameWriter(SimpleNamespace(frame_max=131072, bytes_sent=0), transport)

        assert writer.send_from_thread(b"first")
        assert theirs.recv(100) == b"first"

        # More than the socket takes at once: the rest is the hub's to write, before
        # anything else; until it is written, plain threads keep off the socket.
        big = bytes(range(256)) * 40_000
        assert writer.send_from_thread(big)
        assert not writer.send_from_thread(b"later")
        received = bytearray()
        while len(received) < len(big):
            received += theirs.recv(1 << 20)
        assert bytes(received) == big
        runtime.call(lambda: None)  # the hub is done with its write
        assert writer.send_from_thread(b"later")
        assert theirs.recv(100) == b"later"
        runtime.call(green.close)


def test_a_thread_that_finds_another_writing_leaves_its_frames_to_it():
    runtime = get_runtime()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        green = runtime.call(eventlet.greenio.GreenSocket, ours)  # non-blocking from now on
        sends = []

        def send(data):
            sends.append(bytes(data))
            return green.fd.send(data)

        transport = SimpleNamespace(write=green.sendall, plain_socket=SimpleNamespace(send=send))
        writer = FrameWriter(SimpleNamespace(frame_max=131072, bytes_sent=0), transport)

        with writer._wire:  # as another thread on the socket would
            assert writer.send_from_thread(b"first")
            assert writer.send_from_thread(b"second")
            assert sends == []
        assert writer.send_from_thread(b"third")
        assert sends == [b"firstsecondthird"]
        assert theirs.recv(100) == b"firstsecondthird"

        # Left while the hub held the lock: the hub's next write takes them first.
        with writer._wire:
            assert writer.send_from_thread(b"left")
        runtime.call(writer.send, b"hub's")
        assert theirs.recv(100) == b"lefthub's"
        runtime.call(green.close)


def test_frames_a_thread_left_while_the_hub_wrote_go_out_after_it():
    writes = []

    def write(data):
        writes.append(bytes(data))
        if not writer._from_threads and len(writes) == 1:
            # A thread that found the lock taken by the hub leaves its frames meanwhile.
            writer._from_threads.append(b"late")

    connection = SimpleNamespace(frame_max=131072, bytes_sent=0)
    writer = FrameWriter(connection, SimpleNamespace(write=write))
    get_runtime().call(writer.send, b"hub's")
    wait_until(lambda: writes == [b"hub's", b"late"])
