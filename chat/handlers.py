"""Chat event handlers (being written)."""


def register() -> None:
    return None
