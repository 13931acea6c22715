"""Drill schedules: the schedule model (`model`), when runs happen (`timing`), the checks (`check`), the
operator's suspensions (`state`) and the history and scorecards over the run store (`history`).

The core (model, timing, check, history's arithmetic) is pure: times come in as arguments, runbooks and
heights are given, nothing reads a clock or a node. Reading the inventory, the nodes (halt heights,
protocol activations) and the run store happens at the edge (the command line, the scheduler service).
"""

from iotex_ops.schedule.model import Drills, Period, Problem, Schedule, ScheduleError, drills_file, load, parse
from iotex_ops.schedule.timing import ChainTime, Decision, Record, Upcoming, decide, next_run, occurrences, upcoming

__all__ = [
    "ChainTime",
    "Decision",
    "Drills",
    "Period",
    "Problem",
    "Record",
    "Schedule",
    "ScheduleError",
    "Upcoming",
    "decide",
    "drills_file",
    "load",
    "next_run",
    "occurrences",
    "parse",
    "upcoming",
]
