"""Names shared with Nameko: config keys and their defaults, context keys, wire constants.

Import a key from here rather than spelling the string, as Nameko code does with
``nameko.constants``: ``config[AMQP_URI_CONFIG_KEY]``.
"""

AMQP_URI_CONFIG_KEY = "AMQP_URI"
WEB_SERVER_CONFIG_KEY = "WEB_SERVER_ADDRESS"
RPC_EXCHANGE_CONFIG_KEY = "rpc_exchange"
SERIALIZER_CONFIG_KEY = "serializer"
SERIALIZERS_CONFIG_KEY = "SERIALIZERS"
ACCEPT_CONFIG_KEY = "ACCEPT"
HEARTBEAT_CONFIG_KEY = "HEARTBEAT"
AMQP_SSL_CONFIG_KEY = "AMQP_SSL"
TRANSPORT_OPTIONS_CONFIG_KEY = "TRANSPORT_OPTIONS"
LOGIN_METHOD_CONFIG_KEY = "LOGIN_METHOD"
PREFETCH_COUNT_CONFIG_KEY = "PREFETCH_COUNT"

MAX_WORKERS_CONFIG_KEY = "max_workers"
PARENT_CALLS_CONFIG_KEY = "parent_calls_tracked"

DEFAULT_MAX_WORKERS = 10
DEFAULT_PARENT_CALLS_TRACKED = 10
DEFAULT_SERIALIZER = "json"
DEFAULT_HEARTBEAT = 60
DEFAULT_PREFETCH_COUNT = 10
DEFAULT_AMQP_URI = "memory://"  # the embedded broker
DEFAULT_RPC_EXCHANGE = "nameko-rpc"

# How consumers retry a lost connection (``TRANSPORT_OPTIONS`` overrides any of it). Nameko
# waits 2 s before the first retry; sandbox retries at once, then as Nameko does.
DEFAULT_TRANSPORT_OPTIONS = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 5,
}

# How publishers retry: as consumers do, but never more than 2 s apart (Nameko leaves the
# intervals to kombu: 2 s, then 2 s more each time), for a publish has a caller waiting.
DEFAULT_RETRY_POLICY = {**DEFAULT_TRANSPORT_OPTIONS, "interval_max": 2}

CALL_ID_STACK_CONTEXT_KEY = "call_id_stack"
AUTH_TOKEN_CONTEXT_KEY = "auth_token"
LANGUAGE_CONTEXT_KEY = "language"
USER_ID_CONTEXT_KEY = "user_id"
USER_AGENT_CONTEXT_KEY = "user_agent"

HEADER_PREFIX = "nameko"

# AMQP delivery_mode
NON_PERSISTENT = 1
PERSISTENT = 2
