"""Schedules, as Modal's: `@app.function(schedule=gust.Cron("0 * * * *",
timezone="Europe/Berlin"))` or `schedule=gust.Period(minutes=5)`. gustd calls the
function with no arguments at each fire (docs/SPEC.md "schedule")."""
from typing import Any, Dict, Union

from .exception import InvalidError


class Schedule:
    """What `schedule=` takes: a Cron or a Period."""

    def spec(self) -> Dict[str, Any]:
        raise NotImplementedError


class Cron(Schedule):
    """Runs at the times a five-field cron expression names ("MIN HOUR DOM MON DOW"),
    read as wall-clock times in `timezone` (an IANA name; gustd reads its tzdata)."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        if not isinstance(cron_string, str) or not cron_string.strip():
            raise InvalidError(f"Cron: cron_string must be a cron expression such as \"0 * * * *\", "
                               f"got {cron_string!r}")
        if not isinstance(timezone, str) or not timezone:
            raise InvalidError(f"Cron: timezone must be an IANA time zone name such as \"Europe/Berlin\", "
                               f"got {timezone!r}")
        self.cron_string = cron_string
        self.timezone = timezone

    def spec(self) -> Dict[str, Any]:
        return {"cron": self.cron_string, "timezone": self.timezone}

    def __repr__(self) -> str:
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"


_UNITS = {"weeks": 7 * 86400, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


class Period(Schedule):
    """Runs every given interval, counted from the last fire. Unlike Modal's (which
    is dateutil's relativedelta), gust's periods are fixed lengths: days=1 is 86400
    seconds, whatever DST does (a Cron keeps a wall-clock time), and months and years,
    whose lengths vary, are refused: use a Cron ("0 0 1 * *" is monthly)."""

    def __init__(self, years: int = 0, months: int = 0, weeks: int = 0, days: int = 0, hours: int = 0,
                 minutes: int = 0, seconds: Union[int, float] = 0) -> None:
        if years or months:
            raise InvalidError("Period: years and months have no fixed length in gust; use gust.Cron, e.g. "
                               "Cron(\"0 0 1 * *\") for monthly")
        given = dict(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
        total: Union[int, float] = 0
        for name, v in given.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise InvalidError(f"Period: {name} must be a number >= 0, got {v!r}")
            total += v * _UNITS[name]
        if total != int(total) or total < 1:
            raise InvalidError(f"Period: the interval must be a whole number of seconds, at least 1; got {total!r}")
        self.seconds = int(total)

    def spec(self) -> Dict[str, Any]:
        return {"every": self.seconds}

    def __repr__(self) -> str:
        return f"Period(seconds={self.seconds})"
