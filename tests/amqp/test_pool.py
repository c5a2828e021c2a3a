"""This thread's publishing pools: one per broker and set of connection options."""

from sandbox.amqp.pool import close_pools, get_pool

URI = "amqp://guest:guest@127.0.0.1:5672/pool-keys"  # no connection is opened here


def test_the_same_options_however_given_share_a_pool_and_others_do_not():
    try:
        pool = get_pool(URI, transport_options={"a": 1, "b": 2})
        assert get_pool(URI, transport_options={"b": 2, "a": 1}, ssl=None) is pool
        assert get_pool(URI, transport_options={"a": 1, "b": 3}) is not pool
        assert get_pool(URI, transport_options={"a": 1, "b": 2}, confirms=False) is not pool
        assert get_pool(URI, login_method="PLAIN") is not get_pool(URI)
    finally:
        close_pools(URI)
