"""Errors services raise that are not bad input: the API answers 409."""


class Conflict(Exception):
    """The object's state does not allow this (for example, a revoked key)."""
