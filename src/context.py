"""What every handler is given: the settings and the task store."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings
from .store import Store


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: Store

    @property
    def open_mode(self) -> bool:
        """No API keys: users are addresses, and anyone who knows a task number may use it."""
        return not self.settings.api_keys
