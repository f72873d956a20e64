"""The pure core: functions of their inputs and `now`, no I/O."""
