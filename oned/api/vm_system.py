"""``one.vm.snapshot*/resize/updateconf/attachpci/detachpci/exec/retryexec/cancelexec``."""

from __future__ import annotations
