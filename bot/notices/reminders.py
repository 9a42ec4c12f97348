"""Notices about demos ending and branches about to be disconnected."""
