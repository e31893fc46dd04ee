"""``one.vm.schedadd/schedupdate/scheddelete`` (scheduled actions)."""

from __future__ import annotations
