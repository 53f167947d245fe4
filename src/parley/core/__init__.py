"""The pure core: money, schedules, delinquency, rules, strategy and gate decisions.

Nothing in this package performs I/O, reads the clock or imports anything but the standard
library and its own modules (a test enforces it). Every function takes the facts it needs
and an explicit time, and returns values.
"""
