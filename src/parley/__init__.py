"""Parley: a collections platform whose every contact is lawful, identified and on the record."""

__version__ = "0.1.0"
