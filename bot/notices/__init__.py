"""Texts of the notices the outbox delivers; importing this registers every kind."""

from bot.notices import invites, network, reminders
from bot.notices.registry import RENDERERS, Renderer, renders

__all__ = ["RENDERERS", "Renderer", "invites", "network", "reminders", "renders"]
