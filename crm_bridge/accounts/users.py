"""The people who sign in: creation, passwords (argon2id), roles, extensions, deactivation.

Passwords are hashed with argon2-cffi's :class:`~argon2.PasswordHasher` (argon2id, its current
recommended parameters). A hash made with older parameters is replaced on the next successful
sign-in. A sign-in for a name that does not exist (or a deactivated user) still runs one argon2
verification, against a dummy hash, so the answer takes as long as for a real user and does not
tell which names exist.

Every problem with the input is reported as a :class:`UserInputError` holding one bilingual
message per form field, so a page can show them all beside the fields at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_bridge.accounts.people import display_name_problem
from crm_bridge.db.models import ROLES, User

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
"""Bounds the work a sign-in form can ask of the server."""

USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
"""2-32 characters: ASCII letters, digits, ``.``, ``_``, ``-``; stored in lower case."""

EXTENSION_PATTERN = re.compile(r"\d{2,20}|(?:PJSIP|SIP|IAX2|DAHDI|Local)/[A-Za-z0-9_.+@-]{1,80}")
"""A dialled extension (``1001``) or an Asterisk interface (``PJSIP/1001``,
``Local/1001@from-internal``): nothing that could carry a separator or a line break into AMI."""

QUEUE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A queue name as queues.conf spells a section (``support``)."""

_hasher = PasswordHasher()


class UserInputError(ValueError):
    """Input that cannot be saved; ``errors`` maps a form field to a zh-CN + English message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def normalize_username(username: str) -> str:
    return username.strip().lower()


def username_problem(username: str) -> str | None:
    if not USERNAME_PATTERN.fullmatch(normalize_username(username)):
        return (
            "用户名须为 2-32 位字母、数字或 . _ - / "
            "Username must be 2-32 letters, digits, '.', '_' or '-'"
        )
    return None


def role_problem(role: str) -> str | None:
    if role not in ROLES:
        return f"未知角色 / Unknown role (one of {', '.join(ROLES)})"
    return None


def password_problem(password: str, username: str = "") -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"密码至少 {MIN_PASSWORD_LENGTH} 个字符 / "
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        return (
            f"密码最多 {MAX_PASSWORD_LENGTH} 个字符 / "
            f"Password must be at most {MAX_PASSWORD_LENGTH} characters"
        )
    if username and password.strip().lower() == normalize_username(username):
        return "密码不能与用户名相同 / Password must not be the username"
    return None


def parse_extensions(text: str | Iterable[str]) -> list[str]:
    """Extensions from a form field (separated by commas, spaces or new lines) or a list.

    Duplicates are dropped and the order kept; a bad one raises :class:`UserInputError`.
    """
    parts = re.split(r"[\s,，]+", text) if isinstance(text, str) else list(text)
    extensions: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if not EXTENSION_PATTERN.fullmatch(part):
            raise UserInputError(
                {
                    "extensions": (
                        f"分机格式无效：{part[:40]!r}（如 1001、PJSIP/1001、"
                        "Local/1001@from-internal） / "
                        f"Not an extension or interface: {part[:40]!r} "
                        "(e.g. 1001, PJSIP/1001, Local/1001@from-internal)"
                    )
                }
            )
        if part not in extensions:
            extensions.append(part)
    return extensions


def parse_queues(text: str | Iterable[str], known: Iterable[str] | None) -> list[str]:
    """Supervised queues from a form field (separated like extensions) or a list; each must be
    one of ``known`` (the queues Asterisk has), when they are known. Duplicates are dropped and
    the order kept; a bad one raises :class:`UserInputError`."""
    parts = re.split(r"[\s,，]+", text) if isinstance(text, str) else list(text)
    allowed = None if known is None else set(known)
    queues: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if not QUEUE_PATTERN.fullmatch(part):
            message = f"队列名无效：{part[:40]!r} / Not a queue name: {part[:40]!r}"
            raise UserInputError({"supervised_queues": message})
        if allowed is not None and part not in allowed:
            message = f"没有这个队列：{part} / No such queue: {part}"
            raise UserInputError({"supervised_queues": message})
        if part not in queues:
            queues.append(part)
    return queues


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no user, made once on first use."""
    return _hasher.hash("callbridge-dummy-password-for-even-timing")


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    extensions: str | Iterable[str] = (),
    supervised_queues: str | Iterable[str] = (),
    known_queues: Iterable[str] | None = None,
    display_name: str = "",
) -> User:
    """Add a user (flushed, not committed); every problem at once in a UserInputError.
    ``known_queues``: the queues a supervised queue must be one of (None: not checked)."""
    name = normalize_username(username)
    errors = _problems(
        username=username_problem(username),
        role=role_problem(role),
        password=password_problem(password, name),
        display_name=display_name_problem(display_name),
    )
    try:
        parsed = parse_extensions(extensions)
    except UserInputError as exc:
        errors.update(exc.errors)
    queues: list[str] = []
    try:
        queues = parse_queues(supervised_queues, known_queues)
    except UserInputError as exc:
        errors.update(exc.errors)
    if "username" not in errors and find_user(session, name) is not None:
        errors["username"] = "用户名已存在 / Username already taken"
    if errors:
        raise UserInputError(errors)
    user = User(
        username=name,
        password_hash=hash_password(password),
        role=role,
        extensions=parsed,
        supervised_queues=queues,
        display_name=display_name.strip() or None,
        active=True,
    )
    session.add(user)
    session.flush()
    return user


def update_user(
    session: Session,
    user: User,
    *,
    role: str | None = None,
    extensions: str | Iterable[str] | None = None,
    active: bool | None = None,
    password: str | None = None,
    supervised_queues: str | Iterable[str] | None = None,
    known_queues: Iterable[str] | None = None,
    display_name: str | None = None,
) -> User:
    """Change what is given (None keeps it; an empty display name: the user name is shown);
    refuses to leave the center without an admin.
    A supervised queue is checked against ``known_queues`` when given, unless the user
    already had it (a queue Asterisk no longer reports can stay)."""
    errors = _problems(
        role=role_problem(role) if role is not None else None,
        password=password_problem(password, user.username) if password else None,
        display_name=display_name_problem(display_name) if display_name is not None else None,
    )
    parsed = None
    if extensions is not None:
        try:
            parsed = parse_extensions(extensions)
        except UserInputError as exc:
            errors.update(exc.errors)
    queues = None
    if supervised_queues is not None:
        known = None if known_queues is None else {*known_queues, *user.supervised_queues}
        try:
            queues = parse_queues(supervised_queues, known)
        except UserInputError as exc:
            errors.update(exc.errors)
    stays_admin = (role or user.role) == "admin" and (user.active if active is None else active)
    if user.role == "admin" and user.active and not stays_admin and _active_admins(session) <= 1:
        errors["role"] = "不能停用或降级最后一个管理员 / The last active admin must stay an admin"
    if errors:
        raise UserInputError(errors)
    if role is not None:
        user.role = role
    if parsed is not None:
        user.extensions = parsed
    if queues is not None:
        user.supervised_queues = queues
    if display_name is not None:
        user.display_name = display_name.strip() or None
    if active is False and user.active:
        end_sessions(user)
    if active is not None:
        user.active = active
    if password:
        user.password_hash = hash_password(password)
        end_sessions(user)
    session.flush()
    return user


def end_sessions(user: User) -> None:
    """Every session cookie of ``user`` stops working (sign-out, a new password, deactivation,
    an admin's "sign out everywhere"): the cookies carry the old generation. The caller commits,
    then closes the user's open sockets (``crm_bridge.accounts.session_revocation``)."""
    user.session_generation = (user.session_generation or 0) + 1


def set_password(session: Session, user: User, password: str) -> None:
    """A new password; every browser session of the user ends (see ``crm_bridge.accounts.auth``)."""
    update_user(session, user, password=password)


def deactivate(session: Session, user: User) -> None:
    """The user can no longer sign in, and their open sessions are refused."""
    update_user(session, user, active=False)


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == normalize_username(username)))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (same cost either way).

    A hash made with outdated parameters is replaced (flushed, not committed).
    """
    user = find_user(session, username)
    if user is None or not user.active or len(password) > MAX_PASSWORD_LENGTH:
        _verify(_dummy_hash(), password[:MAX_PASSWORD_LENGTH])
        return None
    if not _verify(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.flush()
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _active_admins(session: Session) -> int:
    statement = select(func.count()).select_from(User).where(User.role == "admin", User.active)
    return session.scalar(statement) or 0


def _problems(**found: str | None) -> dict[str, str]:
    return {field: message for field, message in found.items() if message}
