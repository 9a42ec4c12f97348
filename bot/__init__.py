"""The Telegram side of branchbot."""
