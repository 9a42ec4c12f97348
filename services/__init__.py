"""Operations over the database that the bot, the command line and the scheduler share."""
