"""``one.vm.attach/detach/disksnapshot*/disksaveas/diskresize``."""

from __future__ import annotations
