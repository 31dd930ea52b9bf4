"""What every handler is given: the settings, the task store, the web app's metrics, its
held answers and the storage of photos and results."""

from __future__ import annotations

from dataclasses import dataclass

from src.metrics.web import WebMetrics
from src.settings import Settings
from src.storage import Storage
from src.store import Store
from src.web.waiting import HeldAnswers


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: Store
    metrics: WebMetrics
    held: HeldAnswers  # answers held for `Prefer: wait`
    storage: Storage

    @property
    def open_mode(self) -> bool:
        """No API keys: users are addresses, and anyone who knows a task number may use it."""
        return not self.settings.api_keys
