"""Dependency providers that hand a worker one key of the context data it was called with."""

from __future__ import annotations

from typing import Any

from sandbox.constants import (
    AUTH_TOKEN_CONTEXT_KEY,
    LANGUAGE_CONTEXT_KEY,
    USER_AGENT_CONTEXT_KEY,
    USER_ID_CONTEXT_KEY,
)
from sandbox.extensions import DependencyProvider


class ContextDataProvider(DependencyProvider):
    context_key: str | None = None

    def __init__(self, context_key: str | None = None):
        if context_key is not None:
            self.context_key = context_key

    def get_dependency(self, worker_ctx: Any) -> Any:
        return worker_ctx.data.get(self.context_key)


class Language(ContextDataProvider):
    context_key = LANGUAGE_CONTEXT_KEY


class UserId(ContextDataProvider):
    context_key = USER_ID_CONTEXT_KEY


class UserAgent(ContextDataProvider):
    context_key = USER_AGENT_CONTEXT_KEY


class AuthToken(ContextDataProvider):
    context_key = AUTH_TOKEN_CONTEXT_KEY
