"""``one.vm.migrate``."""

from __future__ import annotations
