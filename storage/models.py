"""The tables. Telegram ids are 64-bit; instants are UTC."""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
    exists,
    table,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

from storage.types import UTCDateTime

# Named constraints keep Alembic migrations identical on SQLite (batch mode) and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Portal(Base):
    __tablename__ = "portals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(253), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(20))
    is_head: Mapped[bool] = mapped_column(Boolean, default=False)
    head_id: Mapped[int | None] = mapped_column(
        ForeignKey("portals.id", ondelete="SET NULL"), index=True
    )
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    demo_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ever_in_network: Mapped[bool] = mapped_column(Boolean, default=False)
    incompatible_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Raised by database triggers (migration 0003) whenever anything its structure page shows
    # changes, whoever writes it, so a drawn tree can be reused while the number stands.
    structure_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Whether the portal is linked to its Bitrix24 (a `portal_links` row), read in the same
    # statement as the portal; the table is named lightly since PortalLink is defined below.
    is_linked: Mapped[bool] = column_property(
        exists().where(table("portal_links", column("portal_id")).c.portal_id == id)
    )


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Case-folded name: SQLite's lower() folds ASCII only, and search must fold Cyrillic too.
    # Compared by code point on both databases (SQLite's BINARY, PostgreSQL's "C"), so lists
    # come out in the same order whatever collation a PostgreSQL database was created with.
    name_folded: Mapped[str] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql"), index=True
    )
    username: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    language: Mapped[str | None] = mapped_column(String(2))
    telegram_language: Mapped[str | None] = mapped_column(String(16))
    current_portal_id: Mapped[int | None] = mapped_column(
        ForeignKey("portals.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


membership_departments = Table(
    "membership_departments",
    Base.metadata,
    Column(
        "membership_id",
        ForeignKey("memberships.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "department_id",
        ForeignKey("departments.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("person_id", "portal_id"),
        # NULLs never collide, so staff that no sync brought in may share the portal freely.
        Index("ix_memberships_portal_external", "portal_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    portal_id: Mapped[int] = mapped_column(
        ForeignKey("portals.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    position: Mapped[str | None] = mapped_column(String(200))
    # The person's user id on the portal's Bitrix24, set only for staff that a sync brought in:
    # one person has a different id on each portal.
    external_id: Mapped[str | None] = mapped_column(String(32))

    person: Mapped[Person] = relationship(lazy="raise")
    departments: Mapped[list["Department"]] = relationship(
        secondary=membership_departments, lazy="raise"
    )


class Department(Base):
    __tablename__ = "departments"
    __table_args__ = (
        UniqueConstraint("portal_id", "key"),
        Index("ix_departments_portal_external", "portal_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    # In code point order on both databases, as Person.name_folded.
    name: Mapped[str] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql")
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), index=True
    )
    head_person_id: Mapped[int | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), index=True
    )
    # The department's id on the portal's Bitrix24, for departments that a sync brought in.
    external_id: Mapped[str | None] = mapped_column(String(32))


class MembershipPhone(Base):
    """A phone number of synced staff, normalised to E.164, so a shared contact can find them."""

    __tablename__ = "membership_phones"

    membership_id: Mapped[int] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
    )
    phone: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class PortalLink(Base):
    """A portal's link to its Bitrix24 through an incoming webhook, and how its syncs go.

    `webhook_url` is a secret: it is never shown in full or logged once stored.
    """

    __tablename__ = "portal_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(
        ForeignKey("portals.id", ondelete="CASCADE"), unique=True
    )
    # Limitation: kept in plain text; the database must be guarded like the bot token.
    webhook_url: Mapped[str] = mapped_column(String(500))
    # "new" until the first sync ends, then "ok" or "failing".
    status: Mapped[str] = mapped_column(String(20), default="new")
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Start of the current run of failed syncs: the admins are told once per run.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    linked_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    portal_id: Mapped[int] = mapped_column(
        ForeignKey("portals.id", ondelete="CASCADE"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL")
    )
    # Set for an invite meant for one person already on the staff who is not linked yet.
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffQuery(Base):
    """A staff search kept on the server so its pages fit in 64 bytes of callback data."""

    __tablename__ = "staff_queries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notice(Base):
    """A message owed to a person: written in the transaction that causes it, sent later.

    `dedupe_key` is unique, so the same event can never be owed twice.
    """

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_pending", "status", "not_before"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who did what, when, and how it ended. Not tied by keys, so history outlives its rows."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_portal_at", "portal_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_person_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    portal_id: Mapped[int | None] = mapped_column(Integer)
    portal_address: Mapped[str | None] = mapped_column(String(253))
    network_head_id: Mapped[int | None] = mapped_column(Integer, index=True)
    details: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(20))


class ProcessedUpdate(Base):
    """A Telegram update taken for handling; its id is claimed once, by one instance only.

    Telegram sends an update again when it gets no answer in time, possibly to another
    instance; the claim makes the copy a no-op. Old ids are pruned.
    """

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
