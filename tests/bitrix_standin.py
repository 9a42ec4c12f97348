"""A local Bitrix24 REST stand-in over HTTP, answering as the REST documentation shows.

It serves one portal's incoming webhook at `http://127.0.0.1:<port>/rest/<user>/<secret>/`:

- `department.get` and `user.get` with their paging (`start`, 50 a page, `total` and `next`;
  `start=-1` leaves the count out), sorting by `ID`, and the filters the sync uses (`ACTIVE`,
  `USER_TYPE`, `ID`, `>ID`, `>=ID`, `<ID`);
- `batch` with `cmd` and `halt`, and `$result[command][index][FIELD]` references between
  commands (a reference that cannot be followed becomes an empty value);
- `profile` and `app.info`, for clients that check the webhook first;
- the envelope: `result`, `total`, `next`, `time`; string ids, `UF_DEPARTMENT` as a list;
- error bodies `{"error": ..., "error_description": ...}`: 401 for a revoked webhook or a
  wrong secret, `expired_token`, 403 for a portal whose REST access is closed;
- Bitrix24's leaky bucket (2 requests a second, a burst of 50 by default): past it a request
  gets 503 `QUERY_LIMIT_EXCEEDED` and is counted as refused.

Tests change the portal between syncs through `departments` and `users`, and make requests
fail with `fail_request`.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

PAGE = 50
MAX_BATCH = 50
SECRET = "k3yb0ardc4t5ecr3t"

_BRACKETS = re.compile(r"\[([^\]]*)\]")
_REFERENCE = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


@dataclass
class StandInDepartment:
    id: int
    name: str
    parent: int | None = None
    head: int | None = None
    sort: int = 500

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"ID": str(self.id), "NAME": self.name, "SORT": self.sort}
        if self.parent is not None:
            row["PARENT"] = str(self.parent)
        row["UF_HEAD"] = str(self.head) if self.head is not None else "0"
        return row


@dataclass
class StandInUser:
    id: int
    name: str
    last_name: str = ""
    email: str = ""
    position: str = ""
    departments: list[int] = field(default_factory=list)
    mobile: str = ""
    work_phone: str = ""
    active: bool = True
    user_type: str = "employee"

    def row(self) -> dict[str, Any]:
        return {
            "ID": str(self.id),
            "XML_ID": f"u{self.id}",
            "ACTIVE": self.active,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "SECOND_NAME": "",
            "EMAIL": self.email,
            "WORK_POSITION": self.position,
            "PERSONAL_MOBILE": self.mobile,
            "WORK_PHONE": self.work_phone,
            "PERSONAL_PHONE": "",
            "UF_DEPARTMENT": list(self.departments),
            "USER_TYPE": self.user_type,
            "IS_ONLINE": "N",
        }


class MethodError(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(code)
        self.status = status
        self.body = {"error": code, "error_description": description}


REVOKED = MethodError(401, "INVALID_CREDENTIALS", "Invalid request credentials")
EXPIRED = MethodError(401, "expired_token", "The access token provided has expired.")
REST_CLOSED = MethodError(403, "ACCESS_DENIED", "REST API is available only on commercial plans.")
LIMIT = MethodError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")


class BitrixStandIn:
    """One Bitrix24 portal's REST API over HTTP on the loopback interface."""

    def __init__(self, *, per_second: float = 2.0, burst: int = 50, user_id: str = "1") -> None:
        self.per_second = per_second
        self.burst = burst
        self.user_id = user_id
        self.secret = SECRET
        self.departments: dict[int, StandInDepartment] = {}
        self.users: dict[int, StandInUser] = {}
        # Every HTTP request that reached us, and those refused for the rate limit.
        self.requests = 0
        self.refused = 0
        self.commands = 0
        self.methods: list[str] = []
        self.revoked = False
        self.rest_closed = False
        self.token_expired = False
        # Request number (counting the accepted ones, from 1) -> what to answer instead.
        self._failures: dict[int, tuple[int, str]] = {}
        self._accepted = 0
        self._level = 0.0
        self._drained_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._sorted_users: list[StandInUser] | None = None
        self.port = 0

    # Running.

    async def start(self) -> BitrixStandIn:
        app = web.Application()
        app.router.add_route("*", "/rest/{user}/{secret}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BitrixStandIn:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rest/{self.user_id}/{self.secret}/"

    def fail_request(self, number: int, status: int, body: str | dict[str, Any]) -> None:
        """Answer the `number`-th accepted request from now with this status and body."""
        text = body if isinstance(body, str) else json.dumps(body)
        self._failures[self._accepted + number] = (status, text)

    # Portal data.

    def add_department(self, department: StandInDepartment) -> StandInDepartment:
        self.departments[department.id] = department
        return department

    def add_user(self, user: StandInUser) -> StandInUser:
        self.users[user.id] = user
        return user

    # HTTP.

    def _take_from_bucket(self) -> bool:
        now = time.monotonic()
        self._level = max(0.0, self._level - (now - self._drained_at) * self.per_second)
        self._drained_at = now
        if self._level + 1 > self.burst + 1e-9:
            return False
        self._level += 1
        return True

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.time()
        self.requests += 1
        if not self._take_from_bucket():
            self.refused += 1
            return _error(LIMIT)
        self._accepted += 1
        method = request.match_info["method"].lower().removesuffix(".json")
        self.methods.append(method)
        if request.match_info["secret"] != self.secret or (
            request.match_info["user"] != self.user_id
        ):
            return _error(REVOKED)
        if self.revoked:
            return _error(REVOKED)
        if self.token_expired:
            return _error(EXPIRED)
        if self.rest_closed:
            return _error(REST_CLOSED)
        failure = self._failures.pop(self._accepted, None)
        if failure is not None:
            return web.Response(
                status=failure[0], text=failure[1], content_type="application/json"
            )
        params = await _params(request)
        self._sorted_users = None
        try:
            if method == "batch":
                result: Any = self._batch(params)
                total = next_start = None
            else:
                self.commands += 1
                result, total, next_start = self._call(method, params)
        except MethodError as error:
            return _error(error)
        body: dict[str, Any] = {"result": result}
        if total is not None:
            body["total"] = total
        if next_start is not None:
            body["next"] = next_start
        body["time"] = _time(started)
        return web.json_response(body)

    # Methods.

    def _call(self, method: str, params: dict[str, Any]) -> tuple[Any, int | None, int | None]:
        params = {str(key).lower(): value for key, value in params.items()}
        if method == "department.get":
            rows = [d.row() for d in sorted(self.departments.values(), key=lambda d: d.id)]
            for key in ("id", "parent", "name"):
                if key in params and not isinstance(params[key], dict):
                    rows = [row for row in rows if str(row.get(key.upper())) == str(params[key])]
            return _page(rows, params)
        if method == "user.get":
            return self._users_page(params)
        if method == "profile":
            return (
                {"ID": self.user_id, "ADMIN": True, "NAME": "Webhook", "LAST_NAME": ""},
                None,
                None,
            )
        if method == "app.info":
            return {"ID": 0, "CODE": "webhook", "LICENSE": "ru_std", "STATUS": "L"}, None, None
        raise MethodError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")

    def _users_page(self, params: dict[str, Any]) -> tuple[Any, int | None, int | None]:
        """A page of users; the sorted list is made once per HTTP request."""
        if self._sorted_users is None:
            self._sorted_users = sorted(self.users.values(), key=lambda user: user.id)
        users = self._sorted_users
        conditions = params.get("filter") or {}
        if not isinstance(conditions, dict):
            conditions = {}
        conditions = {str(key).upper(): str(value) for key, value in conditions.items()}
        after = conditions.get(">ID")
        if after is not None:
            # The index on ID: skip straight past it, as the database would.
            limit = int(after) if after.lstrip("-").isdigit() else 0
            users = users[bisect.bisect_right([user.id for user in users], limit) :]
        try:
            start = int(params.get("start", 0))
        except (TypeError, ValueError):
            start = 0
        descending = str(params.get("order", "ASC")).upper() == "DESC"
        if descending:
            users = list(reversed(users))
        matching = (user for user in users if _matches(user, conditions))
        if start < 0:
            # No count: only as far as one page.
            return [user.row() for user in itertools.islice(matching, PAGE)], None, None
        found = list(matching)
        page = [user.row() for user in found[start : start + PAGE]]
        total = len(found)
        return page, total, start + PAGE if start + PAGE < total else None

    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        commands = params.get("cmd") or {}
        if not isinstance(commands, dict):
            raise MethodError(400, "INVALID_REQUEST", "cmd must be a map")
        if len(commands) > MAX_BATCH:
            raise MethodError(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", "0")) not in ("0", "", "false", "False")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, int] = {}
        nexts: dict[str, int] = {}
        times: dict[str, Any] = {}
        for name, command in commands.items():
            started = time.time()
            self.commands += 1
            method, _, query = str(command).partition("?")
            call_params = _php_params(
                [(key, _resolve(value, results)) for key, value in parse_qsl(query, True)]
            )
            try:
                result, total, next_start = self._call(method.lower(), call_params)
            except MethodError as error:
                errors[name] = error.body
                if halt:
                    break
                continue
            results[name] = result
            if total is not None:
                totals[name] = total
            if next_start is not None:
                nexts[name] = next_start
            times[name] = _time(started)
        # PHP sends an empty map as an empty list.
        return {
            "result": results or [],
            "result_error": errors or [],
            "result_total": totals or [],
            "result_next": nexts or [],
            "result_time": times or [],
        }


# Parsing and answering.


def _error(error: MethodError) -> web.Response:
    return web.json_response(error.body, status=error.status)


def _time(started: float) -> dict[str, Any]:
    finished = time.time()
    return {
        "start": started,
        "finish": finished,
        "duration": finished - started,
        "processing": finished - started,
        "date_start": datetime.fromtimestamp(started, UTC).isoformat(),
        "date_finish": datetime.fromtimestamp(finished, UTC).isoformat(),
        "operating_reset_at": int(started) + 600,
        "operating": 0,
    }


async def _params(request: web.Request) -> dict[str, Any]:
    pairs = list(request.query.items())
    if request.can_read_body:
        if request.content_type == "application/json":
            loaded = await request.json()
            if isinstance(loaded, dict):
                return {**_php_params(pairs), **loaded}
        else:
            form = await request.post()
            pairs += [(key, str(value)) for key, value in form.items()]
    return _php_params(pairs)


def _php_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query pairs as PHP reads them: `FILTER[>ID]=5` -> {"FILTER": {">ID": "5"}}."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head, *_BRACKETS.findall("[" + rest)] if rest else [head]
        target = params
        for part in path[:-1]:
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = target[part] = {}
            target = nested
        target[path[-1]] = value
    return params


def _resolve(value: str, results: dict[str, Any]) -> str:
    """`$result[cmd][49][ID]` -> that value of an earlier command's result, or ""."""

    def follow(match: re.Match[str]) -> str:
        current: Any = results.get(match[1])
        for part in _BRACKETS.findall(match[2]):
            if isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            elif isinstance(current, dict) and part in current:
                current = current[part]
            else:
                return ""
        return "" if isinstance(current, (dict, list)) or current is None else str(current)

    return _REFERENCE.sub(follow, value)


def _page(
    rows: list[dict[str, Any]], params: dict[str, Any]
) -> tuple[Any, int | None, int | None]:
    sort = str(params.get("sort", "ID")).upper()
    if sort == "ID" and str(params.get("order", "ASC")).upper() == "DESC":
        rows = list(reversed(rows))
    try:
        start = int(params.get("start", 0))
    except (TypeError, ValueError):
        start = 0
    if start < 0:
        return rows[:PAGE], None, None
    page = rows[start : start + PAGE]
    total = len(rows)
    return page, total, start + PAGE if start + PAGE < total else None


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("y", "1", "true")


def _matches(user: StandInUser, conditions: dict[str, str]) -> bool:
    number = user.id
    for key, text in conditions.items():
        if key == "ACTIVE" and user.active != _truthy(text):
            return False
        if key == "USER_TYPE" and user.user_type != text:
            return False
        limit = int(text) if text.lstrip("-").isdigit() else 0
        if key == "ID" and number != limit:
            return False
        if key == ">ID" and not number > limit:
            return False
        if key == ">=ID" and not number >= limit:
            return False
        if key == "<ID" and not number < limit:
            return False
    return True


# Portals to sync.

FIRST_NAMES = ["Anna", "Boris", "Vera", "Gleb", "Daria", "Egor", "Zoya", "Ivan", "Kira", "Lev"]
LAST_NAMES = ["Petrova", "Ivanov", "Sokolova", "Smirnov", "Orlova", "Volkov", "Lebedeva", "Kozlov"]


def populate(
    standin: BitrixStandIn,
    *,
    people: int,
    departments: int,
    seed: int = 7,
    inactive: int = 0,
    extranet: int = 0,
) -> None:
    """A portal of `people` active employees in a tree of `departments`, each with a head.

    Ids have gaps, as on a real portal; phones are written in several formats. `inactive`
    fired people and `extranet` outside users come on top and must never be synced.
    """
    rng = random.Random(seed)
    for number in range(1, departments + 1):
        parent = None if number == 1 else rng.randint(1, number - 1)
        standin.add_department(StandInDepartment(number, f"Department {number}", parent))
    user_id = 0
    formats = [
        "+7 9{0:02d} {1:03d}-{2:02d}-{3:02d}",
        "8 (9{0:02d}) {1:03d}-{2:02d}-{3:02d}",
        "79{0:02d}{1:03d}{2:02d}{3:02d}",
    ]
    for index in range(people + inactive + extranet):
        user_id += rng.choice((1, 1, 2, 3))
        digits = f"{index:07d}"
        phone = rng.choice(formats).format(
            int(digits[:2]), int(digits[2:5]), int(digits[5:7]), index % 100
        )
        standin.add_user(
            StandInUser(
                id=user_id,
                name=rng.choice(FIRST_NAMES),
                last_name=f"{rng.choice(LAST_NAMES)}-{index}",
                email=f"person{index}@portal.example",
                position=rng.choice(["Manager", "Engineer", "Accountant", ""]),
                departments=[rng.randint(1, departments)] if departments else [],
                mobile=phone,
                active=index < people + extranet,
                user_type="extranet" if people <= index < people + extranet else "employee",
            )
        )
    employees = [user for user in standin.users.values() if user.active]
    employees = [user for user in employees if user.user_type == "employee"]
    by_department: dict[int, list[int]] = {}
    for user in employees:
        for department_id in user.departments:
            by_department.setdefault(department_id, []).append(user.id)
    for department in standin.departments.values():
        members = by_department.get(department.id)
        department.head = members[0] if members else None
