"""The one shell of every signed-in page: the navigation bar of the user's roles.

Each role has its own pages; a link is shown only to the roles whose check lets it through
(``crm_bridge/accounts/auth.py`` and each feature's ``require_role``), so no link leads to a 403.
An admin passes every check but the agents' own history, so an admin's bar holds every group.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import pass_context


@dataclass(frozen=True)
class NavLink:
    href: str
    zh: str
    en: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class NavGroup:
    zh: str
    en: str
    links: tuple[NavLink, ...]


SUPERVISING = ("supervisor", "admin")
SCHEDULING = ("scheduler", "admin")
ADMIN = ("admin",)

NAV_GROUPS = (
    NavGroup("坐席", "Agent", (
        NavLink("/agent", "来电", "Calls", ("agent", "admin")),
        NavLink("/me/campaigns", "预览外呼", "Preview campaigns", ("agent", "admin")),
        NavLink("/me/history", "我的通话", "My history", ("agent",)),
    )),
    NavGroup("主管", "Supervisor", (
        NavLink("/supervisor/wallboard", "大屏", "Wallboard", SUPERVISING),
        NavLink("/supervisor/calls", "通话", "Calls", SUPERVISING),
        NavLink("/supervisor/complaints", "投诉", "Complaints", SUPERVISING),
        NavLink("/supervisor/kpis", "指标", "KPIs", SUPERVISING),
    )),
    NavGroup("运营", "Scheduler", (
        NavLink("/campaigns", "外呼活动", "Campaigns", SCHEDULING),
    )),
    NavGroup("管理", "Admin", (
        NavLink("/admin/users", "用户", "Users", ADMIN),
        NavLink("/admin/do-not-call", "免打扰名单", "Do-not-call", ADMIN),
        NavLink("/admin/audit", "审计日志", "Audit log", ADMIN),
        NavLink("/supervisor/settings", "设置", "Settings", ADMIN),
        NavLink("/admin/pause-reasons", "小休原因", "Pause reasons", ADMIN),
        NavLink("/admin/routing", "来电路由", "Call routing", ADMIN),
    )),
)  # fmt: skip
"""Every page of the bar, by role. A supervisor's bar holds the four pages they work in; their
own menu on those pages has the rest of theirs (flagged calls, visits, settings)."""


def nav_for(role: str) -> list[NavGroup]:
    """The groups and links ``role`` may open; a group shows its name only beside others."""
    groups = []
    for group in NAV_GROUPS:
        links = tuple(link for link in group.links if role in link.roles)
        if links:
            groups.append(NavGroup(group.zh, group.en, links))
    return groups


@pass_context
def current_link(context: object, href: str) -> bool:
    """Whether ``href`` is the page being shown, or a page under it (``/campaigns/3``)."""
    request = context.get("request")  # type: ignore[attr-defined]
    path = request.url.path if request is not None else ""
    return path == href or path.startswith(href.rstrip("/") + "/")


def install_shell_globals(environment: object) -> None:
    environment.globals.update(nav_for=nav_for, current_link=current_link)  # type: ignore[attr-defined]
