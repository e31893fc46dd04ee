"""``one.vm.backup/backupcancel/restore``."""

from __future__ import annotations
