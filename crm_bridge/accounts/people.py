"""People, not extensions: the name shown for an agent wherever a call names their extension.

A call keeps the extension that took it (``calls.agent``: ``1001``); the user whose extensions
hold it is the person. Their name is the display name an admin gave them, else their user
name; pages show it with the extension beside, ``王小明 (1001)``. An extension no user holds
(any more) is shown as it is. Deactivated users keep their name: their old calls are theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge.db.models import User

MAX_DISPLAY_NAME = 64


@dataclass(frozen=True)
class Person:
    name: str
    extensions: tuple[str, ...]


def extension_keys(extension: str) -> list[str]:
    """How calls may name an extension a user holds: as given, and an interface
    (``PJSIP/1002``, ``Local/1002@from-internal``) also by its bare extension (``1002``)."""
    bare = extension.split("/", 1)[-1].split("@", 1)[0]
    return [extension] if bare == extension else [extension, bare]


def people(session: Session) -> list[Person]:
    """Every user who holds an extension, by name."""
    rows = session.execute(select(User.username, User.display_name, User.extensions))
    found = [
        Person(display_name or username, tuple(extensions))
        for username, display_name, extensions in rows
        if extensions
    ]
    return sorted(found, key=lambda person: person.name)


@dataclass(frozen=True)
class AgentNames:
    """Extension -> the person's name, for showing calls."""

    names: dict[str, str]

    def name(self, agent: str | None) -> str | None:
        return self.names.get(agent) if agent else None

    def label(self, agent: str | None) -> str:
        """``王小明 (1001)``; the extension alone when no one holds it; "" for no agent."""
        if not agent:
            return ""
        name = self.names.get(agent)
        return f"{name} ({agent})" if name else agent


def agent_names(session: Session) -> AgentNames:
    names: dict[str, str] = {}
    for person in people(session):
        for extension in person.extensions:
            for key in extension_keys(extension):
                names.setdefault(key, person.name)
    return AgentNames(names)


def extensions_named(session: Session, text: str) -> set[str]:
    """The extensions (as calls name them) of the people whose name, user name or extension
    holds ``text``, in any case: "王" finds 王小明's, "100" finds 1001's."""
    wanted = text.strip().casefold()
    if not wanted:
        return set()
    rows = session.execute(select(User.username, User.display_name, User.extensions))
    found: set[str] = set()
    for username, display_name, extensions in rows:
        keys = [key for extension in extensions or () for key in extension_keys(extension)]
        said = [username, display_name or "", *keys]
        if any(wanted in part.casefold() for part in said):
            found.update(keys)
    return found


def display_name_problem(name: str) -> str | None:
    if len(name.strip()) > MAX_DISPLAY_NAME:
        return (
            f"姓名最多 {MAX_DISPLAY_NAME} 个字符 / A name has at most {MAX_DISPLAY_NAME} characters"
        )
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "姓名不能含控制字符 / A name cannot hold control characters"
    return None
