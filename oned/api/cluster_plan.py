"""``one.cluster.optimize/planexecute/plandelete``."""

from __future__ import annotations
