"""Which text each kind of notice gets, rendered in the recipient's language at send time."""

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.utils.formatting import Text

# A notice's params as stored, and the deployment's time zone for the instants among them.
Renderer = Callable[[dict[str, Any], ZoneInfo], Text]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    """Register the text of one kind of notice; params are what was stored with it."""

    def register(function: Renderer) -> Renderer:
        RENDERERS[kind] = function
        return function

    return register
