"""Names shared with Nameko on the wire and in config."""

HEADER_PREFIX = "nameko"

CALL_ID_STACK_CONTEXT_KEY = "call_id_stack"
AUTH_TOKEN_CONTEXT_KEY = "auth_token"
LANGUAGE_CONTEXT_KEY = "language"
USER_ID_CONTEXT_KEY = "user_id"
USER_AGENT_CONTEXT_KEY = "user_agent"

PERSISTENT = 2
NON_PERSISTENT = 1
