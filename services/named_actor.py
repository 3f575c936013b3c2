"""A named, detached Ray actor as a gateway reaches it: found by name on first use, off the
event loop (``ray.get_actor`` is a blocking call to Ray's control server: rule 6), and found
again after a failure (Ray restarts such an actor under the same name)."""

from __future__ import annotations

import asyncio
from typing import Any


class NamedActor:
    """Owns the cached handle of the actor ``name`` in ``namespace``."""

    def __init__(self, name: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self._handle: Any = None

    async def handle(self) -> Any:
        """The actor's handle; ``LookupError`` if this process is not connected to Ray or no
        such actor runs."""
        import ray

        if self._handle is None:
            if not ray.is_initialized():
                raise LookupError("this process is not connected to Ray")
            try:
                self._handle = await asyncio.to_thread(
                    ray.get_actor, self.name, namespace=self.namespace
                )
            except ValueError:
                raise LookupError(f"no actor {self.name!r} is running") from None
        return self._handle

    def forget(self) -> None:
        """Look the actor up again next time (it failed, or was restarted)."""
        self._handle = None
