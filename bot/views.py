"""Texts people read. User-given strings are escaped or placed through formatting helpers."""

from collections import OrderedDict
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram.utils.formatting import Bold, Italic, Text
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from domain.addresses import display_address
from domain.rules import Plan, Role
from domain.structure import StructureTree, TreeLine
from services.directory import StaffPage
from services.people import MyPortal

MESSAGE_LIMIT = 4096
# Room left below Telegram's limit for a page's header and footer.
PAGE_BUDGET = 3600
MAX_LINE = 600


def utf16_length(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def instant(moment: datetime, zone: ZoneInfo) -> str:
    """A UTC instant in the deployment's time zone, with its offset."""
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%d.%m.%Y %H:%M} (UTC{offset[:3]}:{offset[3:]})"


def plan_name(plan: Plan) -> str:
    names = {
        Plan.FREE: _("Free"),
        Plan.BASIC: _("Basic"),
        Plan.STANDARD: _("Standard"),
        Plan.PROFESSIONAL: _("Professional"),
        Plan.ENTERPRISE: _("Enterprise"),
    }
    return names[plan]


def role_name(role: Role) -> str:
    return _("administrator") if role is Role.ADMIN else _("employee")


def portal_mark(portal: MyPortal) -> str:
    """A short sign of the portal's place in a network, used on buttons and in lists."""
    if portal.is_head:
        return "🏛"
    if portal.head_id is not None:
        return "⚠️" if portal.incompatible_until is not None else "🏢"
    return "▫️"


def portal_list(portals: list[MyPortal], current_id: int | None, total: int | None = None) -> Text:
    """The text above the portal buttons; `total` counts them when `portals` is one page."""
    if not portals:
        return Text(
            _("You are not on any portal's staff yet."),
            "\n\n",
            _("Ask an administrator of your portal for an invite link and open it."),
        )
    return Text(
        Bold(_("Your portals")),
        f" ({len(portals) if total is None else total})\n\n",
        _("🏛 head of a network · 🏢 branch · ⚠️ branch to be disconnected · ▫️ standalone"),
        "\n",
        _("✓ marks your current portal. Tap a portal to open its menu."),
        *(["\n\n", _("No current portal yet: choose one.")] if current_id is None else []),
    )


def portal_card(portal: MyPortal, is_current: bool, zone: ZoneInfo, head_name: str | None) -> Text:
    """The branch menu's header: what the portal is and where it stands."""
    parts: list[str | Text] = [Bold(portal.name), "\n", display_address(portal.address), "\n\n"]
    parts += [_("Your role: {role}").format(role=role_name(portal.role)), "\n"]
    parts += [_("Plan: {plan}").format(plan=plan_name(portal.plan)), "\n"]
    if portal.is_head:
        parts.append(_("Head of the network"))
    elif portal.head_id is not None:
        if head_name is not None:
            parts += [_("Branch of the network of "), Bold(head_name)]
        else:
            parts.append(_("Branch of a network"))
    else:
        parts.append(_("Standalone portal"))
    if portal.demo_until is not None:
        parts += ["\n", _("Demo until {moment}").format(moment=instant(portal.demo_until, zone))]
    if portal.incompatible_until is not None:
        moment = instant(portal.incompatible_until, zone)
        parts += [
            "\n⚠️ ",
            _("Not compatible with the network: will be disconnected on {moment}").format(
                moment=moment
            ),
        ]
    if is_current:
        parts += ["\n\n✓ ", _("This is your current portal.")]
    return Text(*parts)


def staff_page(portal_name: str, page: StaffPage, search: str | None) -> Text:
    header: list[str | Text] = [Bold(portal_name), " · "]
    if search:
        header.append(
            ngettext(
                "{count} person found for “{query}”",
                "{count} people found for “{query}”",
                page.total,
            ).format(count=page.total, query=clip(search, 100))
        )
    else:
        header.append(
            ngettext(
                "{count} person on the staff", "{count} people on the staff", page.total
            ).format(count=page.total)
        )
    if page.pages > 1:
        header.append(
            " · " + _("page {page} of {pages}").format(page=page.page + 1, pages=page.pages)
        )
    if not page.rows:
        nothing = _("Nobody's name contains that text.") if search else _("The staff is empty.")
        return Text(*header, "\n\n", nothing)

    lines: list[str | Text] = []
    for number, row in enumerate(page.rows, start=page.offset + 1):
        details = [row.position] if row.position else []
        details += [", ".join(row.departments)] if row.departments else []
        lines += ["\n", f"{number}. ", Bold(clip(row.name, 200))]
        if row.role is Role.ADMIN:
            lines += [" · ", Italic(role_name(row.role))]
        if details:
            lines += ["\n    ", clip(" · ".join(details), MAX_LINE)]
    hint = "" if search else "\n\n" + _("To find someone: /staff and part of the name.")
    return Text(*header, "\n", *lines, hint)


def structure_pages(portal_name: str, tree: StructureTree) -> list[Text]:
    """The whole tree, split into pages that each stay below Telegram's message limit."""
    lines = _structure_lines(tree)
    starts = _page_starts(lines)
    return [
        _structure_page(portal_name, tree, lines, start, end)
        for start, end in zip(starts, [*starts[1:], len(lines)], strict=True)
    ]


def structure_page(portal_name: str, tree: StructureTree, page: int) -> tuple[Text, int]:
    """One page of `structure_pages` (the nearest one when out of range), and how many there are.

    Only that page's lines become formatted text; the others are measured as plain strings,
    once for a tree that is drawn again unchanged.
    """
    lines = _structure_lines(tree)
    key = (id(tree), _line_text(lines[-1]))
    measured = _measured.get(key)
    if measured is None or measured[0] is not tree:
        measured = (tree, _page_starts(lines))
        _measured[key] = measured
        if len(_measured) > MEASURED_TREES_KEPT:
            _measured.popitem(last=False)
    else:
        _measured.move_to_end(key)
    starts = measured[1]
    page = min(max(page, 0), len(starts) - 1)
    end = starts[page + 1] if page + 1 < len(starts) else len(lines)
    return _structure_page(portal_name, tree, lines, starts[page], end), len(starts)


# A line of the drawn structure: a department, or a note in italics and what follows it.
StructureLine = TreeLine | tuple[str, str]

# Where the pages of trees drawn lately begin, by the tree (kept, so its id stays its own) and
# the last line, which alone differs by language.
MEASURED_TREES_KEPT = 16
_measured: OrderedDict[tuple[int, str], tuple[StructureTree, list[int]]] = OrderedDict()


def _structure_lines(tree: StructureTree) -> list[StructureLine]:
    lines: list[StructureLine] = list(tree.lines)
    if tree.without_department:
        lines.append((_("Not in any department"), f" ({tree.without_department})"))
    if not tree.lines:
        lines.insert(0, (_("No departments yet."), ""))
    return lines


def _page_starts(lines: list[StructureLine]) -> list[int]:
    """Where each page begins: a page takes lines while they fit in PAGE_BUDGET."""
    starts = [0]
    used = 0
    for index, line in enumerate(lines):
        size = utf16_length(_line_text(line)) + 1
        if index > starts[-1] and used + size > PAGE_BUDGET:
            starts.append(index)
            used = 0
        used += size
    return starts


def _structure_page(
    portal_name: str, tree: StructureTree, lines: list[StructureLine], start: int, end: int
) -> Text:
    header = Text(
        Bold(portal_name),
        " · ",
        ngettext("{count} person", "{count} people", tree.staff_total).format(
            count=tree.staff_total
        ),
        "\n",
        _("In brackets: people in the department and under it; after the dash: its head."),
        "\n",
    )
    return Text(header, *_joined([_structure_line(line) for line in lines[start:end]]))


def _line_text(line: StructureLine) -> str:
    """The line as the person reads it: what `_structure_line` draws, without formatting."""
    if isinstance(line, tuple):
        return line[0] + line[1]
    text = f"{line.prefix}{clip(line.name, 200)} ({line.headcount})"
    return f"{text} — {clip(line.head_name, 200)}" if line.head_name else text


def _structure_line(line: StructureLine) -> Text:
    if isinstance(line, TreeLine):
        return _tree_line(line)
    note, rest = line
    return Text(Italic(note), rest) if rest else Text(Italic(note))


def _joined(lines: list[Text]) -> list[str | Text]:
    joined: list[str | Text] = []
    for line in lines:
        joined += ["\n", line]
    return joined


def _tree_line(line: TreeLine) -> Text:
    parts: list[str | Text] = [line.prefix, Bold(clip(line.name, 200)), f" ({line.headcount})"]
    if line.head_name:
        parts += [" — ", clip(line.head_name, 200)]
    return Text(*parts)
