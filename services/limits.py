"""Size limits every transport's input meets the same way (``max_text_chars``)."""

from __future__ import annotations

from models.errors import TooLarge


def check_text(text: str, limit: int) -> None:
    if len(text) > limit:
        raise TooLarge(f"text is {len(text)} characters; the limit is {limit}")
