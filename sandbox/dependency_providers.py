"""Built-in dependency providers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.extensions import DependencyProvider

if TYPE_CHECKING:
    from sandbox.containers import WorkerContext


class Config(DependencyProvider):
    """Injects a copy of the container's config, so a worker can read but not change it."""

    def get_dependency(self, worker_ctx: WorkerContext) -> dict[str, Any]:
        return dict(worker_ctx.container.config)
