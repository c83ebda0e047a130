"""The emulator's clock: wall time that tests can shift or freeze.

Token expiry, the rolling rate-limit window, the daily quota and "today" all read this clock, so a
test can cross a 30-second window, an hour-long token life or a UTC midnight without sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime


class Clock:
    def __init__(self) -> None:
        self._offset_s = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        """Seconds since the epoch, as the emulator sees them."""
        if self._frozen_at is not None:
            return self._frozen_at
        return time.time() + self._offset_s

    def today(self) -> date:
        return datetime.fromtimestamp(self.now(), UTC).date()

    def advance(self, seconds: float) -> None:
        if self._frozen_at is not None:
            self._frozen_at += seconds
        else:
            self._offset_s += seconds

    def set(self, epoch_s: float) -> None:
        if self._frozen_at is not None:
            self._frozen_at = epoch_s
        else:
            self._offset_s = epoch_s - time.time()

    def reset(self) -> None:
        """Back to real time, running."""
        self._offset_s = 0.0
        self._frozen_at = None

    def freeze(self, frozen: bool) -> None:
        """Stop (or restart) the clock at its current reading."""
        if frozen and self._frozen_at is None:
            self._frozen_at = self.now()
        elif not frozen and self._frozen_at is not None:
            self._offset_s = self._frozen_at - time.time()
            self._frozen_at = None

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None
