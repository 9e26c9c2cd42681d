"""Stage 1: the request context, with what the request left out filled in.

No timestamp -> the server's clock (UTC). A device the version never saw -> the unknown
device (OOV), which training taught the models (`mask_devices`); the answer says so in its
warnings rather than refusing the request. A version trained on data without times
(`Features.time_known` off) answers every request as of an unknown hour and weekday (-1):
its models learned nothing about either.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from train.features import OOV


@dataclass(frozen=True)
class Context:
    device: str | None  # as the request named it, None when unknown to the version
    device_index: int  # in the version's device vocabulary, OOV when unknown
    hour: int  # 0-23, -1 unknown
    weekday: int  # Monday = 0, -1 unknown
    warning: str | None = None


def utc_hour_and_weekday(ts: dt.datetime) -> tuple[int, int]:
    """The UTC hour and weekday of any datetime (naive = UTC). Computed on the minute of the
    week, so no date is out of range (year 1 at +05:00 has no UTC datetime)."""
    offset = ts.utcoffset() or dt.timedelta(0)
    minute = (ts.weekday() * 1440 + ts.hour * 60 + ts.minute
              - int(offset.total_seconds()) // 60) % (7 * 1440)
    return minute % 1440 // 60, minute // 1440


def request_context(device: str | None, timestamp: dt.datetime | None,
                    devices: dict[str, int], time_known: bool = True) -> Context:
    hour, weekday = (utc_hour_and_weekday(timestamp or dt.datetime.now(dt.UTC)) if time_known
                     else (-1, -1))
    index = devices.get(device, OOV) if device is not None else OOV
    warning = None
    if device is not None and index == OOV:
        known = ", ".join(sorted(d for d in devices if d != "unknown"))
        warning = f"device {device!r} is unknown to this model version (known: {known}); " \
                  "answered as an unknown device"
    return Context(device=device if index != OOV else None, device_index=index,
                   hour=hour, weekday=weekday, warning=warning)
