"""The branch network's rules in plain Python: nothing here knows Telegram or the database."""
