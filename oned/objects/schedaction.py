"""A scheduled action (mirrors ``ScheduledAction.h``/``ScheduledAction.cc``).

In OpenNebula 7 scheduled actions are objects of their own table (``schedaction_pool``:
oid, parent_id, type, body, time, done) that VMs and backup jobs reference by id
(``SCHED_ACTIONS``). ``parse`` applies a ``SCHED_ACTION`` vector the way oned does,
on top of the current values (``schedupdate`` keeps what the vector does not name).
"""

from __future__ import annotations

import calendar
import copy as _copy
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from oned.objects.base import esc, int_of, parse_xml, text_of
from oned.template_merge import VM_SCHED_ACTIONS

# ``ScheduledAction::Repeat`` and ``EndOn``.
NONE, WEEKLY, MONTHLY, YEARLY, HOURLY = -1, 0, 1, 2, 3
END_NONE, NEVER, TIMES, DATE = -1, 0, 1, 2

_DAYS_ERRORS = (
    "Days in a week have to be in [0,6] range",
    "Days in a month have to be in [1,31] range",
    "Days in a year have to be in [0,365] range",
    "Hours have to be in [0,168] range",
)
_FIRST_DAY = (0, 1, 0, 1)
_LAST_DAY = (7, 32, 366, 168)
_WHOLE_INT = re.compile(r"\s*[+-]?[0-9]+")
_LEADING_INT = re.compile(r"\s*([+-]?[0-9]+)")


class SchedActionError(ValueError):
    """``parse`` refused a vector; ``str()`` is oned's text."""


INT_MAX, TIME_MAX = 2**31 - 1, 2**63 - 1


def whole_int(text: str | None, limit: int = INT_MAX) -> int | None:
    """``vector_value(name, int&)``: the value only when the whole text is an integer
    that fits (``limit``: int, or ``TIME_MAX`` for a time_t)."""
    if text is None or not _WHOLE_INT.fullmatch(text):
        return None
    value = int(text)
    return value if -limit - 1 <= value <= limit else None


def day_set(days: str) -> list[int]:
    """``one_util::split_unique<int>``: the sorted distinct integers of a list."""
    found: set[int] = set()
    for part in days.split(","):
        m = _LEADING_INT.match(part)
        if m and part.strip() and -INT_MAX - 1 <= int(m.group(1)) <= INT_MAX:
            found.add(int(m.group(1)))
    return sorted(found)


@dataclass
class ScheduledAction:
    oid: int
    parent_id: int
    type: str = "VM"
    action: str = ""
    args: str = ""
    time: int = -1
    repeat: int = NONE
    days: str = ""
    end_type: int = END_NONE
    end_value: int = -1
    done: int = -1
    message: str = ""
    warning: int = 0
    #: Scheduled actions have no name (pools index every object by one).
    name: str = ""

    TABLE: ClassVar[str] = "schedaction_pool"

    # -- parsing (``ScheduledAction::parse``) ------------------------------------------

    def _parse_time(self, text: str, origin: int) -> int:
        if text.startswith("+"):
            if self.type == "BACKUPJOB":
                return -1
            text = text[1:]
        else:
            origin = 0
        value = whole_int(text, TIME_MAX)
        if value is None or not -TIME_MAX - 1 <= value + origin <= TIME_MAX:
            return -1
        return value + origin

    def parse(self, va: dict[str, str], origin: int) -> None:
        """Apply ``va``; raises ``SchedActionError`` with oned's text."""
        if self.type == "BACKUPJOB":
            self.action = "backup"
        else:
            action = va.get("ACTION", "")
            if action:
                if action not in VM_SCHED_ACTIONS:
                    raise SchedActionError(f"{action} is not supported.")
                self.action = action
        if not self.action:
            raise SchedActionError("No ACTION in template for Scheduled Action.")
        text = va.get("TIME", "")
        if text:
            self.time = self._parse_time(text, origin)
        if self.time == -1:
            raise SchedActionError(f"Unable to parse the time value or value is empty: {text}")
        warning = va.get("WARNING")
        if warning:
            self.warning = self._parse_time(warning, origin)
        if self.warning == -1:
            raise SchedActionError(f"Unable to parse the warning value: {warning or text}")
        repeat = whole_int(va.get("REPEAT"))
        if repeat is not None:
            if not NONE <= repeat <= HOURLY:
                raise SchedActionError(f"Wrong REPEAT value: {repeat}")
            self.repeat = repeat
        if self.repeat == NONE:
            self.days = ""
        elif "DAYS" in va:
            self.days = va["DAYS"]
            self._check_days()
        elif not self.days:
            raise SchedActionError("Repeat set, but DAYS are empty")
        end_type = whole_int(va.get("END_TYPE"))
        if end_type is not None:
            if not END_NONE <= end_type <= DATE:
                raise SchedActionError(f"Wrong END_TYPE value: {end_type}")
            self.end_type = end_type
        if self.end_type <= NEVER:
            self.end_value = -1
        else:
            end_value = whole_int(va.get("END_VALUE"), TIME_MAX)
            if end_value is not None:
                self.end_value = end_value
                if self.end_type == TIMES and end_value < 0:
                    raise SchedActionError(
                        "Error parsing END_VALUE, times has to be greater or equal to 0"
                    )
        if "ARGS" in va:
            self.args = va["ARGS"]

    def _check_days(self) -> None:
        days = day_set(self.days)
        if not days:
            raise SchedActionError("Scheduled Action repeat set, but DAYS are empty")
        r = self.repeat
        if days[0] < _FIRST_DAY[r] or days[-1] >= _LAST_DAY[r] or (r == HOURLY and len(days) != 1):
            raise SchedActionError(_DAYS_ERRORS[r])

    # -- running (``is_due``, ``next_action``) -----------------------------------------

    def is_due(self, now: int) -> bool:
        """Due by the pool's query: ``time < now AND time > done``."""
        return self.time < now and self.time > self.done

    def next_action(self, now: int) -> int:
        """Mark done at ``now`` and move TIME to the next repetition (-1: no more)."""
        self.done = now
        if self.repeat == NONE:
            return -1
        days = day_set(self.days)
        if not days:
            return -1
        if self.end_type == TIMES:
            if self.end_value <= 0:
                return -1
            self.end_value -= 1
        elif self.end_type == DATE and now > self.end_value:
            return -1
        if self.repeat == HOURLY:
            step = days[0] * 3600
            if step <= 0:
                return -1
            self.time += step
            while self.time < now:
                self.time += step
            self.time = min(self.time, TIME_MAX)
            return self.time
        local = time.localtime(now)
        if self.repeat == WEEKLY:
            cday = (local.tm_wday + 1) % 7  # tm_wday: Sunday is 0
        elif self.repeat == MONTHLY:
            cday = local.tm_mday
        else:
            cday = local.tm_yday - 1
        if cday < days[0]:
            delta = days[0] - cday
        elif cday >= days[-1]:
            delta = self._days_in_period(local.tm_mon - 1, local.tm_year) - cday + days[0]
        else:
            delta = next(d for d in days if d > cday) - cday
        self.time = min(self.time + delta * 24 * 3600, TIME_MAX)
        self.warning = 0
        return self.time

    def _days_in_period(self, month: int, year: int) -> int:
        if self.repeat == WEEKLY:
            return 7
        if self.repeat == MONTHLY:
            return calendar.monthrange(year, month + 1)[1]
        if self.repeat == YEARLY:
            return 366 if calendar.isleap(year) else 365
        return 0

    # -- XML ---------------------------------------------------------------------------

    def to_xml(self) -> str:
        return (
            f"<SCHED_ACTION><ID>{self.oid}</ID><PARENT_ID>{self.parent_id}</PARENT_ID>"
            f"<TYPE>{esc(self.type)}</TYPE><ACTION>{esc(self.action)}</ACTION>"
            f"<ARGS>{esc(self.args)}</ARGS><TIME>{self.time}</TIME>"
            f"<REPEAT>{self.repeat}</REPEAT><DAYS>{esc(self.days)}</DAYS>"
            f"<END_TYPE>{self.end_type}</END_TYPE><END_VALUE>{self.end_value}</END_VALUE>"
            f"<DONE>{self.done}</DONE><MESSAGE>{esc(self.message)}</MESSAGE>"
            f"<WARNING>{self.warning}</WARNING></SCHED_ACTION>"
        )

    def columns(self) -> dict[str, Any]:
        return {
            "parent_id": self.parent_id,
            "type": self.type,
            "time": self.time,
            "done": self.done,
        }

    @classmethod
    def from_xml(cls, body: str) -> ScheduledAction:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID", -1),
            parent_id=int_of(root, "PARENT_ID", -1),
            type=text_of(root, "TYPE"),
            action=text_of(root, "ACTION"),
            args=text_of(root, "ARGS"),
            time=int_of(root, "TIME", -1),
            repeat=int_of(root, "REPEAT", NONE),
            days=text_of(root, "DAYS"),
            end_type=int_of(root, "END_TYPE", END_NONE),
            end_value=int_of(root, "END_VALUE", -1),
            done=int_of(root, "DONE", -1),
            message=text_of(root, "MESSAGE"),
            warning=int_of(root, "WARNING", 0),
        )

    def copy(self) -> ScheduledAction:
        return _copy.copy(self)
