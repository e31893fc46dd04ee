"""``one.vm.attachnic/detachnic/updatenic/attachsg/detachsg``."""

from __future__ import annotations
