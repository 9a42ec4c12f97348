"""Settings read from the environment and an optional `.env` file."""

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Telegram tokens are "<bot id>:<secret>"; the secret is 30-50 URL-safe characters in practice,
# but we accept any non-empty run of them so test tokens work too.
TOKEN_PATTERN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{1,128}$")
DATABASE_URL_PATTERN = re.compile(r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
WEBHOOK_URL_PATTERN = re.compile(r"^https://[^\s/:?#@]+(:\d{1,5})?(/[^\s?#]*)?$")
# What Telegram accepts as a webhook's secret_token.
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
REDIS_URL_PATTERN = re.compile(r"^(rediss?|unix)://\S+$")
HEALTH_PATH = "/health"


class SettingsError(Exception):
    """The configuration cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where Telegram posts updates, the secret it sends, and where this instance listens."""

    url: str
    secret: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080

    @property
    def path(self) -> str:
        """The path the instance serves: the public URL's, since balancers pass paths on."""
        return urlsplit(self.url).path or "/"


class Settings(BaseSettings):
    """What an operator configures; names match the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    database_url: str = "sqlite+aiosqlite:///branchbot.sqlite3"
    bot_api_url: str | None = None
    log_level: str = "INFO"
    timezone: str = "Europe/Moscow"
    invite_ttl_days: Annotated[int, Field(ge=1, le=365)] = 7
    # Messages a second for notices and reminders; Telegram allows about 30 overall.
    send_rate: Annotated[float, Field(gt=0, le=30)] = 25.0
    # How often demo ends, disconnections and reminders are looked for.
    reminder_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    polling_timeout: Annotated[int, Field(ge=1, le=50)] = 30
    # How often every linked portal's staff and structure are read from its Bitrix24.
    sync_interval_minutes: Annotated[int, Field(ge=1, le=10080)] = 60
    # Accept http:// webhooks on the loopback interface: for tests against a local stand-in.
    allow_loopback_http_webhooks: bool = False
    # How updates arrive: long polling (one instance only) or Telegram's webhook (any number).
    update_mode: Literal["polling", "webhook"] = "polling"
    # The public HTTPS address Telegram posts updates to; a load balancer forwards them to
    # WEBHOOK_HOST:WEBHOOK_PORT of each instance, on the same path.
    webhook_url: str | None = None
    # Sent by Telegram in every webhook request; requests without it are refused.
    webhook_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    # 0 listens on any free port (for tests).
    webhook_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # Dialog state in Redis, shared by every instance and kept across restarts; in memory
    # when unset.
    redis_url: SecretStr | None = None

    @field_validator("bot_token", mode="before")
    @classmethod
    def _token_shape(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not TOKEN_PATTERN.match(value.strip()):
            raise ValueError("BOT_TOKEN is malformed: expected <digits>:<secret> from @BotFather")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("sqlite://"):
            value = "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
        elif value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not DATABASE_URL_PATTERN.match(value):
            raise ValueError("DATABASE_URL must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("bot_api_url")
    @classmethod
    def _bot_api_url_shape(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/:]+(:\d{1,5})?(/[^\s]*)?$", value):
            raise ValueError("BOT_API_URL must be an http:// or https:// URL")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_shape(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        if not WEBHOOK_URL_PATTERN.match(value):
            raise ValueError("WEBHOOK_URL must be an https:// URL, without a query")
        if urlsplit(value).path.rstrip("/") == HEALTH_PATH:
            raise ValueError(f"WEBHOOK_URL cannot end in {HEALTH_PATH}: that is the health check")
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secret_shape(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not WEBHOOK_SECRET_PATTERN.match(value.strip()):
            raise ValueError("WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value.strip()

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url_shape(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not REDIS_URL_PATTERN.match(value.strip()):
            raise ValueError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _log_level_known(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("timezone")
    @classmethod
    def _timezone_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"TIMEZONE {value!r} is not a known time zone") from error
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def invite_ttl(self) -> timedelta:
        return timedelta(days=self.invite_ttl_days)

    def require_token(self) -> str:
        """The token as text, or a SettingsError when none is configured."""
        if self.bot_token is None:
            raise SettingsError("BOT_TOKEN is not set: put the token from @BotFather in it")
        return self.bot_token.get_secret_value()

    def require_webhook(self) -> Webhook:
        """The webhook settings, or a SettingsError naming what is missing."""
        if self.webhook_url is None:
            raise SettingsError("WEBHOOK_URL is not set: the public https:// URL for Telegram")
        if self.webhook_secret is None:
            raise SettingsError(
                "WEBHOOK_SECRET is not set: 1-256 characters of A-Z, a-z, 0-9, _ and -"
            )
        return Webhook(
            url=self.webhook_url,
            secret=self.webhook_secret.get_secret_value(),
            host=self.webhook_host,
            port=self.webhook_port,
        )


def load_settings(*, env_file: str | None = ".env", **overrides: object) -> Settings:
    """Read the settings, turning validation failures into one readable line."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = str(item["msg"]).removeprefix("Value error, ")
            # Our own checks name the variable; pydantic's bounds and types say only the rule.
            if item["type"] != "value_error" and item["loc"]:
                message = f"{str(item['loc'][0]).upper()}: {message}"
            problems.append(message)
        raise SettingsError("; ".join(problems)) from None
