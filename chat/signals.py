"""Receivers for chat models (being written)."""


def connect() -> None:
    return None
