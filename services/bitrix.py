"""Reading a portal's departments and active employees from its Bitrix24 through a webhook.

Our side needs one thing of Bitrix24's REST API: running a `batch` of up to 50 commands, paced
within the portal's limits. `BitrixClient` is that interface; `FastBitrixClient` implements it
over fast-bitrix24, and tests stand in for the portal over HTTP. `read_portal` plans the paging:

- The first request is one batch holding the first page of departments and 49 pages of people
  by offset, so a portal of up to 2,450 people is read in one request.
- Further departments are read by offset (their total is known from the first page).
- Further people, on a large portal, are read by the id filter Bitrix24 recommends for big
  exports (`FILTER[>ID]` and `start=-1`, which spares the server counting), chained inside each
  batch through `$result[...]` references, so each request still carries 50 pages.

The webhook URL is a secret: `Webhook.masked` is the only form of it that may be shown or logged.
"""

import asyncio
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
from fast_bitrix24 import BitrixAsync

from domain.addresses import AddressError, canonical_address
from services.phones import normalise_phones

log = logging.getLogger(__name__)

# fast-bitrix24 logs every request's parameters and every answer (staff names, emails and
# phones) at DEBUG and INFO; an operator needs none of it.
logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)

PAGE_SIZE: Final = 50
MAX_BATCH_COMMANDS: Final = 50
# Beyond any real portal: a server that never stops answering full pages is broken.
MAX_PEOPLE: Final = 500_000
MAX_DEPARTMENTS: Final = 50_000
REQUEST_TIMEOUT_SECONDS: Final = 60.0

WEBHOOK_PATH: Final = re.compile(
    r"^/rest/(?P<user>[1-9][0-9]{0,9})/(?P<secret>[A-Za-z0-9]{6,64})/?$"
)
LOOPBACK_NAMES: Final = frozenset({"localhost"})


# The webhook.


class WebhookError(ValueError):
    """The text is not an incoming webhook URL we accept; the message says why, in English."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """An incoming webhook: `https://<portal>/rest/<user id>/<secret>/`."""

    url: str = field(repr=False)
    host: str
    user_id: str

    @property
    def masked(self) -> str:
        """What may be shown or logged: the host and the user id, never the secret."""
        return f"{self.host}/rest/{self.user_id}/***"

    def __str__(self) -> str:
        return self.masked


def parse_webhook(text: str, *, allow_loopback_http: bool = False) -> Webhook:
    """The webhook in `text`; only https, except a loopback http address when allowed."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise WebhookError("it is not a URL") from None
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookError("it has no host name")
    if parts.scheme == "http":
        if not (allow_loopback_http and _is_loopback(host)):
            raise WebhookError("only https:// webhooks are accepted")
    elif parts.scheme != "https":
        raise WebhookError("only https:// webhooks are accepted")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("it must not carry a user name or password")
    if parts.query or parts.fragment:
        raise WebhookError("it must end after the secret, with no query")
    path = WEBHOOK_PATH.match(parts.path)
    if path is None:
        raise WebhookError("it must look like https://<portal>/rest/<user id>/<secret>/")
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    url = f"{parts.scheme}://{netloc}/rest/{path['user']}/{path['secret']}/"
    return Webhook(url=url, host=host, user_id=path["user"])


def serves(webhook: Webhook, address: str) -> bool:
    """Whether the webhook is the portal's own: its host is the portal's address.

    A loopback host passes parsing only where tests allow it, and stands in for any portal.
    """
    if _is_loopback(webhook.host):
        return True
    try:
        return canonical_address(webhook.host) == address
    except AddressError:
        return False


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mask_webhook_text(text: str) -> str:
    """A webhook-looking text for the log or the audit, with its secret hidden."""
    return re.sub(r"(/rest/[0-9]+/)[^/\s]+", r"\1***", text)


# What can go wrong.


class FailureKind(StrEnum):
    REVOKED = "revoked"
    EXPIRED = "expired"
    REST_CLOSED = "rest_closed"
    NO_SCOPE = "no_scope"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    UNREACHABLE = "unreachable"
    MALFORMED = "malformed"
    REFUSED = "refused"


FAILURE_WORDS: Final = {
    FailureKind.REVOKED: "Bitrix24 refused the webhook: it was deleted or lost its rights",
    FailureKind.EXPIRED: "Bitrix24 says the access token has expired",
    FailureKind.REST_CLOSED: "Bitrix24 closed REST access to this portal (Free plans have none)",
    FailureKind.NO_SCOPE: "the webhook lacks the rights to read users and departments",
    FailureKind.RATE_LIMITED: "Bitrix24 kept refusing requests for going over its rate limit",
    FailureKind.UNAVAILABLE: "Bitrix24 kept answering with server errors",
    FailureKind.UNREACHABLE: "the portal could not be reached over the network",
    FailureKind.MALFORMED: "Bitrix24 answered something that is not a valid REST answer",
    FailureKind.REFUSED: "Bitrix24 refused the request",
}

# Bitrix24's error codes, by what they mean for us.
ERROR_KINDS: Final = {
    "expired_token": FailureKind.EXPIRED,
    "invalid_token": FailureKind.REVOKED,
    "invalid_credentials": FailureKind.REVOKED,
    "no_auth_found": FailureKind.REVOKED,
    "wrong_auth_type": FailureKind.REVOKED,
    "invalid_grant": FailureKind.REVOKED,
    "user_access_error": FailureKind.REVOKED,
    "access_denied": FailureKind.REST_CLOSED,
    "payment_required": FailureKind.REST_CLOSED,
    "insufficient_scope": FailureKind.NO_SCOPE,
    "query_limit_exceeded": FailureKind.RATE_LIMITED,
    "operation_time_limit": FailureKind.RATE_LIMITED,
}
# Worth waiting and asking again: the limits refill, servers come back.
RETRIED_CODES: Final = frozenset({"query_limit_exceeded", "operation_time_limit"})


class BitrixError(Exception):
    """A read that could not finish. `code` is Bitrix24's error code when it gave one.

    The message never holds the webhook: `detail` is built from Bitrix24's answer only.
    """

    def __init__(self, kind: FailureKind, detail: str = "", code: str | None = None) -> None:
        self.kind = kind
        self.code = code
        self.detail = mask_webhook_text(detail)[:300]
        super().__init__(self.words)

    @property
    def words(self) -> str:
        """The reason in words, for the log, the audit and the command line."""
        words = FAILURE_WORDS[self.kind]
        if self.code:
            words += f" ({self.code}"
            words += f": {self.detail})" if self.detail else ")"
        elif self.detail:
            words += f" ({self.detail})"
        return words


# The interface.


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """Each command's result, and the totals of those that counted."""

    results: Mapping[str, Any]
    totals: Mapping[str, int]


class BitrixClient(Protocol):
    """What reading a portal needs of its REST API."""

    @property
    def requests(self) -> int:
        """HTTP requests made so far."""

    async def batch(self, commands: Mapping[str, str]) -> BatchAnswer:
        """Run up to 50 commands (`method?query`) in one request; halt at the first error."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Bitrix24's leaky bucket: `burst` requests at once, then `per_second`."""

    per_second: float = 2.0
    burst: int = 50


# Bitrix24's documented limits: Enterprise portals get more.
STANDARD_LIMITS: Final = RateLimits(per_second=2.0, burst=50)
ENTERPRISE_LIMITS: Final = RateLimits(per_second=5.0, burst=250)


def limits_for_plan(plan: str) -> RateLimits:
    return ENTERPRISE_LIMITS if plan == "enterprise" else STANDARD_LIMITS


ClientFactory = Callable[[Webhook, RateLimits], BitrixClient]


class LeakyBucket:
    """Our reckoning of the portal's bucket, never below Bitrix24's own.

    A request is counted from the moment its answer is back (the server counted it earlier, so
    its unit has drained longer there), and one still in flight counts as full.
    """

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._level = 0.0
        self._in_flight = 0
        self._drained_at = clock()
        self._lock = asyncio.Lock()

    def _drain(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._drained_at) * self.limits.per_second)
        self._drained_at = now

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until one more request fits, then hold its place until its answer is back."""
        async with self._lock:
            while True:
                self._drain()
                excess = self._level + self._in_flight + 1 - self.limits.burst
                if excess <= 0:
                    break
                await self._sleep(min(excess, 1.0) / self.limits.per_second)
            self._in_flight += 1
        try:
            yield
        finally:
            self._drain()
            self._in_flight -= 1
            self._level += 1


class _Retried(aiohttp.ClientResponseError):
    """A 5xx answer: fast-bitrix24 retries these with its back-off, we keep the code."""

    def __init__(self, response: aiohttp.ClientResponse, code: str | None) -> None:
        super().__init__(response.request_info, (), status=response.status, message=code or "")
        self.bitrix_code = code


async def _check_answer(response: aiohttp.ClientResponse) -> None:
    """Turn Bitrix24's error answers into our errors before fast-bitrix24 reads them.

    fast-bitrix24 would otherwise drop the body of a refusal (so `expired_token` and a closed
    REST look alike) or return an error body as an empty result.
    """
    body = await response.read()
    response.release()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    code = description = None
    if isinstance(payload, dict) and "error" in payload:
        code = str(payload.get("error") or "")
        description = str(payload.get("error_description") or "")
    # A server error is asked again, unless its code says asking again cannot help.
    known = ERROR_KINDS.get(code.lower()) if code else None
    if response.status >= 500 and (known is None or known is FailureKind.RATE_LIMITED):
        raise _Retried(response, code)
    if code is not None:
        kind = ERROR_KINDS.get(code.lower(), FailureKind.REFUSED)
        if kind is FailureKind.REFUSED and response.status == 401:
            kind = FailureKind.REVOKED
        raise BitrixError(kind, description or "", code)
    if response.status in (401, 403):
        raise BitrixError(FailureKind.REVOKED, f"HTTP {response.status}")
    if response.status >= 400:
        raise BitrixError(FailureKind.REFUSED, f"HTTP {response.status}")
    if not isinstance(payload, dict):
        raise BitrixError(FailureKind.MALFORMED, "the answer is not a JSON object")


class FastBitrixClient:
    """`BitrixClient` over fast-bitrix24's async client, which retries 5xx answers with back-off.

    We pace requests ourselves as well: fast-bitrix24 counts a request only once its answer is
    back, so requests sent together could overrun the burst before it notices.
    """

    def __init__(self, webhook: Webhook, limits: RateLimits = STANDARD_LIMITS) -> None:
        self._session = aiohttp.ClientSession(
            raise_for_status=_check_answer,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        )
        self._bucket = LeakyBucket(limits)
        self._bitrix = BitrixAsync(
            webhook.url,
            verbose=False,
            request_pool_size=limits.burst,
            requests_per_second=limits.per_second,
            client=self._session,
        )
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    async def batch(self, commands: Mapping[str, str]) -> BatchAnswer:
        async with self._bucket.slot():
            self._requests += 1
            answer = await self._call({"halt": 1, "cmd": dict(commands)})
        return parse_batch_answer(answer, commands)

    # Limitation: fast-bitrix24 retries a refused request itself, outside our bucket.
    async def _call(self, params: dict[str, Any]) -> Any:
        # Exceptions from below may hold the webhook URL: each is replaced by one without it.
        try:
            return await self._bitrix.call("batch", params, raw=True)
        except BitrixError:
            raise
        except RuntimeError as error:
            # fast-bitrix24 gave up after its retries; the last refusal is in the chain.
            code = _retried_code(error)
            kind = (
                FailureKind.RATE_LIMITED
                if code is not None and code.lower() in RETRIED_CODES
                else FailureKind.UNAVAILABLE
                if code is not None or _in_chain(error, _Retried)
                else FailureKind.UNREACHABLE
            )
            raise BitrixError(kind, code=code) from None
        except (aiohttp.ClientError, TimeoutError, OSError):
            raise BitrixError(FailureKind.UNREACHABLE) from None
        except ValueError:
            raise BitrixError(FailureKind.MALFORMED, "the answer is not JSON") from None

    async def aclose(self) -> None:
        await self._session.close()


def _in_chain(error: BaseException, kind: type[BaseException]) -> bool:
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False


def _retried_code(error: BaseException) -> str | None:
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, _Retried):
            return current.bitrix_code
        current = current.__cause__ or current.__context__
    return None


def parse_batch_answer(answer: Any, commands: Mapping[str, str]) -> BatchAnswer:
    """The `batch` envelope: `result` holds `result`, `result_error`, `result_total`."""
    if not isinstance(answer, dict) or not isinstance(answer.get("result"), dict):
        raise BitrixError(FailureKind.MALFORMED, "batch answered without a result")
    body = answer["result"]
    errors = body.get("result_error")
    if isinstance(errors, dict) and errors:
        name, error = next(iter(errors.items()))
        code = str(error.get("error", "")) if isinstance(error, dict) else ""
        description = str(error.get("error_description", "")) if isinstance(error, dict) else ""
        kind = ERROR_KINDS.get(code.lower(), FailureKind.REFUSED)
        raise BitrixError(kind, f"{name}: {description}" if description else name, code or None)
    results = body.get("result")
    if isinstance(results, list) and not results:
        results = {}  # PHP's empty array
    if not isinstance(results, dict):
        raise BitrixError(FailureKind.MALFORMED, "batch results are not a map")
    missing = [name for name in commands if name not in results]
    if missing:
        raise BitrixError(FailureKind.MALFORMED, f"batch left out {missing[0]}")
    totals_raw = body.get("result_total")
    totals: dict[str, int] = {}
    if isinstance(totals_raw, dict):
        for name, total in totals_raw.items():
            try:
                totals[str(name)] = int(total)
            except (TypeError, ValueError):
                raise BitrixError(FailureKind.MALFORMED, f"total of {name}") from None
    return BatchAnswer(results=results, totals=totals)


# What a read brings back.


@dataclass(frozen=True, slots=True)
class RemoteDepartment:
    id: str
    name: str
    parent_id: str | None
    head_id: str | None


@dataclass(frozen=True, slots=True)
class RemoteEmployee:
    id: str
    name: str
    email: str | None
    position: str | None
    department_ids: tuple[str, ...]
    phones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PortalSnapshot:
    """A portal's departments and active employees as Bitrix24 gave them at one read."""

    departments: list[RemoteDepartment]
    employees: list[RemoteEmployee]
    requests: int


# People read so far, and how many there are when known.
Progress = Callable[[int, int | None], Awaitable[None]]


def php_query(params: Mapping[str, Any], prefix: str = "") -> str:
    """Parameters as PHP reads them from a query (`FILTER[>ID]=5`), for a batch command."""
    parts: list[str] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            parts.append(php_query(value, name))
        else:
            # `$result[...]` references must reach Bitrix24 as they are.
            text = str(value)
            safe = "$[]" if text.startswith("$result[") else ""
            parts.append(f"{quote(name, safe='[]')}={quote(text, safe=safe)}")
    return "&".join(part for part in parts if part)


EMPLOYEE_FILTER: Final = {"ACTIVE": "true", "USER_TYPE": "employee"}


def department_command(start: int) -> str:
    return "department.get?" + php_query({"sort": "ID", "order": "ASC", "START": start})


def people_by_offset(start: int) -> str:
    return "user.get?" + php_query(
        {"sort": "ID", "order": "ASC", "FILTER": EMPLOYEE_FILTER, "start": start}
    )


def people_after(last_id: str) -> str:
    """The page of people after `last_id` (a number or a `$result[...]` reference)."""
    return "user.get?" + php_query(
        {
            "sort": "ID",
            "order": "ASC",
            "FILTER": {**EMPLOYEE_FILTER, ">ID": last_id},
            "start": -1,
        }
    )


async def read_portal(
    client: BitrixClient,
    *,
    commands_per_batch: int = MAX_BATCH_COMMANDS,
    expected_departments: int = 0,
    progress: Progress | None = None,
) -> PortalSnapshot:
    """Every department and active employee of the portal, or a BitrixError.

    `expected_departments` (how many the last sync found) sizes the first request, so that a
    portal that changed little is read in as few requests as the pages it takes.
    """
    size = max(2, min(commands_per_batch, MAX_BATCH_COMMANDS))

    # The first request: the departments' pages we expect, and as many pages of people as fit.
    department_pages = min(expected_departments // PAGE_SIZE + 1, size - 1)
    first = {
        f"d{page * PAGE_SIZE}": department_command(page * PAGE_SIZE)
        for page in range(department_pages)
    }
    people_pages = size - department_pages
    first.update({f"u{page}": people_by_offset(page * PAGE_SIZE) for page in range(people_pages)})
    answer = await client.batch(first)
    departments: list[RemoteDepartment] = []
    for name in first:
        if name.startswith("d"):
            departments += _departments(answer.results[name])
    department_total = answer.totals.get("d0", len(departments))
    people: list[dict[str, Any]] = []
    more_people = True
    for page in range(people_pages):
        rows = _page_after(answer.results[f"u{page}"], people)
        people += rows
        if len(rows) < PAGE_SIZE:
            more_people = False
            break
    people_total = answer.totals.get("u0")
    if progress is not None:
        await progress(len(people), people_total)

    pending_departments = list(
        range(department_pages * PAGE_SIZE, min(department_total, MAX_DEPARTMENTS), PAGE_SIZE)
    )
    while pending_departments or more_people:
        commands: dict[str, str] = {}
        while pending_departments and len(commands) < size:
            start = pending_departments.pop(0)
            commands[f"d{start}"] = department_command(start)
        chain: list[str] = []
        while more_people and len(commands) < size:
            name = f"c{len(chain)}"
            # Each page starts after the last person of the page before it. We read a page
            # only when the one before was full, so its reference always resolves.
            after = f"$result[{chain[-1]}][{PAGE_SIZE - 1}][ID]" if chain else _last_id(people)
            commands[name] = people_after(after)
            chain.append(name)
        answer = await client.batch(commands)
        for name in commands:
            if name.startswith("d"):
                departments += _departments(answer.results[name])
        for name in chain:
            rows = _page_after(answer.results[name], people)
            people += rows
            if len(rows) < PAGE_SIZE:
                more_people = False
                break
        if len(people) > MAX_PEOPLE:
            raise BitrixError(FailureKind.MALFORMED, "user.get never stopped")
        if progress is not None:
            await progress(len(people), people_total)

    return PortalSnapshot(
        departments=_unique_departments(departments),
        employees=_employees(people),
        requests=client.requests,
    )


def _page_after(result: Any, before: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A page of people that must go on, in ascending ids, from the people read before it.

    A page that goes back means the portal ignored the sort or the id filter; reading on would
    miss people, and a sync must never take the missed ones for people who left.
    """
    rows = _rows(result, "user.get")
    last = _id_number(before[-1]) if before else 0
    for row in rows:
        number = _id_number(row)
        if number <= last:
            raise BitrixError(FailureKind.MALFORMED, "user.get did not keep to the id order")
        last = number
    return rows


def _rows(result: Any, method: str) -> list[dict[str, Any]]:
    if isinstance(result, dict) and not result:
        return []  # PHP's empty array, as some versions send it
    if not isinstance(result, list) or not all(isinstance(row, dict) for row in result):
        raise BitrixError(FailureKind.MALFORMED, f"{method} did not answer a list")
    if len(result) > PAGE_SIZE:
        raise BitrixError(FailureKind.MALFORMED, f"{method} answered more than a page")
    for row in result:
        if not re.fullmatch(r"[0-9]{1,18}", str(row.get("ID", ""))):
            raise BitrixError(FailureKind.MALFORMED, f"{method} gave a row without a valid ID")
    return result


def _id_number(row: Mapping[str, Any]) -> int:
    return int(str(row["ID"]))


def _last_id(rows: Sequence[Mapping[str, Any]]) -> str:
    return str(rows[-1]["ID"]) if rows else "0"


def _text(row: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = row.get(key)
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = " ".join(str(value).split())
    return text[:limit] or None


def _id_text(value: Any) -> str | None:
    text = str(value).strip() if value not in (None, "", False) else ""
    return text if re.fullmatch(r"[0-9]{1,18}", text) and text != "0" else None


def _departments(result: Any) -> list[RemoteDepartment]:
    return [
        RemoteDepartment(
            id=str(row["ID"]),
            name=_text(row, "NAME", 200) or f"#{row['ID']}",
            parent_id=_id_text(row.get("PARENT")),
            head_id=_id_text(row.get("UF_HEAD")),
        )
        for row in _rows(result, "department.get")
    ]


def _unique_departments(departments: list[RemoteDepartment]) -> list[RemoteDepartment]:
    # Offset pages may overlap when departments change while they are read.
    return list({department.id: department for department in departments}.values())


def _is_active_employee(row: Mapping[str, Any]) -> bool:
    """The filter asked for these; an older portal that ignores it is filtered here."""
    active = row.get("ACTIVE", True)
    if active in (False, "N", "n", "false", 0, "0"):
        return False
    user_type = row.get("USER_TYPE")
    return user_type in (None, "", "employee")


def _employees(rows: list[dict[str, Any]]) -> list[RemoteEmployee]:
    employees: dict[str, RemoteEmployee] = {}
    for row in rows:
        if not _is_active_employee(row):
            continue
        names = [_text(row, key, 100) for key in ("NAME", "LAST_NAME")]
        name = " ".join(part for part in names if part) or _text(row, "EMAIL", 200)
        departments = row.get("UF_DEPARTMENT") or []
        if not isinstance(departments, list):
            departments = [departments]
        email = _text(row, "EMAIL", 254)
        employees[str(row["ID"])] = RemoteEmployee(
            id=str(row["ID"]),
            name=(name or f"#{row['ID']}")[:200],
            email=email.lower() if email and "@" in email else None,
            position=_text(row, "WORK_POSITION", 200),
            department_ids=tuple(
                dict.fromkeys(d for d in (_id_text(value) for value in departments) if d)
            ),
            phones=tuple(
                normalise_phones(
                    _text(row, key, 40)
                    for key in ("PERSONAL_MOBILE", "WORK_PHONE", "PERSONAL_PHONE")
                )
            ),
        )
    return list(employees.values())
