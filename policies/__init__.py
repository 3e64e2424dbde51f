"""Pure scheduling policies: schedules, validation, expressions and the decision of one tick.

Nothing in this package performs I/O or reads the clock; time is always a parameter.
"""
