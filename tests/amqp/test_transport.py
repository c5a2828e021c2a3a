from types import SimpleNamespace

from sandbox.amqp.transport import FrameWriter

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
