"""Persistence: SQLAlchemy models, queries that take a session, and migrations."""
