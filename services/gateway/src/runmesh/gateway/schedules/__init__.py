"""Schedules (issue 17 item 7): a run or a pipeline submitted at each tick of a cron
expression in a time zone, with an overlap policy; kept in `runs.schedules`, fired by every
gateway replica's schedule loop exactly once per tick."""
