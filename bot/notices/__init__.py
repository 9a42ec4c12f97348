"""Texts of the notices the outbox delivers; importing this registers every kind."""

from bot.notices import bitrix, invites, network, reminders
from bot.notices.registry import RENDERERS, Renderer, renders

__all__ = ["RENDERERS", "Renderer", "bitrix", "invites", "network", "reminders", "renders"]
