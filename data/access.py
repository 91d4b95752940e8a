"""Who may do what, in which workspace, and the audit log (no Streamlit here).

- **Workspaces**: each team's data is its own DuckDB file, ``<root>/<name>.duckdb``,
  with a name of 1-40 lower-case letters, digits, ``-`` or ``_`` (so it can sit in a
  URL and a file name). The **registry** (``<root>/control.duckdb``) holds the
  workspaces, their members and roles, and the audit log.
- **Roles**: ``viewer`` (browse, masked exports), ``analyst`` (also import and undo),
  ``admin`` (also members, unmasked exports, forgetting a customer). :data:`ALLOWED`
  lists the actions of each role. Identity (who someone is) comes from the sign-in;
  what they may do comes only from the registry, checked on every run
  (:meth:`Registry.principal`) and again by every function that does the work
  (:func:`authorize`).
- **Local mode** (no identity provider): one local user, admin of the one workspace
  ``local`` whose file is the configured database (:func:`data.config.db_path`); the
  registry sits beside it.
- **Audit log**: an append-only table (``audit_log``): when, who (the signed-in
  email of a team member, or ``local``), workspace, action, outcome (``ok`` /
  ``denied``), rows affected and a detail that never holds a customer's personal
  data: :func:`scrub` replaces anything shaped like an email address or a phone
  number, and identifiers of forgotten customers are logged only as a keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

ROLES = ("viewer", "analyst", "admin")
ACTIONS = ("browse", "export", "import", "undo", "export_unmasked", "unmask", "manage_members", "forget_customer",
           "rebuild_demo")
ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset({"browse", "export"}),
    "analyst": frozenset({"browse", "export", "import", "undo"}),
    "admin": frozenset(ACTIONS),
}
LOCAL_USER = "local"
LOCAL_WORKSPACE = "local"
WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
PHONE = re.compile(r"(?<!\d)(?:\+?84|0)[\s.\-]?\d(?:[\s.\-]?\d){7,9}(?!\d)")
_DDL = (
    "CREATE TABLE IF NOT EXISTS workspaces (name VARCHAR PRIMARY KEY, created_at TIMESTAMP, created_by VARCHAR)",
    "CREATE TABLE IF NOT EXISTS members (workspace VARCHAR, email VARCHAR, role VARCHAR, added_by VARCHAR, "
    "added_at TIMESTAMP, PRIMARY KEY (workspace, email))",
    "CREATE SEQUENCE IF NOT EXISTS audit_seq",
    "CREATE TABLE IF NOT EXISTS audit_log (id BIGINT DEFAULT nextval('audit_seq') PRIMARY KEY, logged_at TIMESTAMP, "
    "actor VARCHAR, workspace VARCHAR, action VARCHAR, outcome VARCHAR, n_rows BIGINT, detail VARCHAR)",
)


class Forbidden(PermissionError):
    """The signed-in person may not do this here (the message names the action and
    the role, never data)."""


class AccessError(ValueError):
    """A workspace name or member entry that cannot be used."""


@dataclass(frozen=True)
class Principal:
    """A signed-in person in one workspace: email (``local`` in local mode),
    workspace, role (None: not a member)."""

    email: str
    workspace: str
    role: str | None

    def can(self, action: str) -> bool:
        return self.role is not None and action in ALLOWED.get(self.role, frozenset())


def scrub(text: str) -> str:
    """``text`` with anything shaped like an email address or a Vietnamese phone
    number replaced by ``[email]`` / ``[phone]`` (for logs and error messages)."""
    return PHONE.sub("[phone]", EMAIL.sub("[email]", text))


def check_workspace_name(name: str) -> str:
    if not isinstance(name, str) or not WORKSPACE_NAME.fullmatch(name):
        raise AccessError("a workspace name is 1-40 lower-case letters, digits, '-' or '_', starting with a letter "
                          "or digit")
    return name


class Registry:
    """The workspaces, members and audit log of one installation (see the module
    docstring). ``root`` holds ``control.duckdb`` and the workspaces' files; in local
    mode ``local_db`` is the one workspace's file."""

    def __init__(self, root: str | Path, *, local_db: str | Path | None = None, secret: str = "") -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.local_db = None if local_db is None else Path(local_db).resolve()
        self._secret = (secret or "customer-marketing").encode()
        self._con = duckdb.connect(str(self.root / "control.duckdb"))
        self._lock = threading.Lock()
        with self._lock:
            for ddl in _DDL:
                self._con.execute(ddl)

    # -- workspaces ------------------------------------------------------------
    def workspace_path(self, name: str) -> Path:
        """The DuckDB file of workspace ``name`` (always inside ``root``)."""
        if self.local_db is not None and name == LOCAL_WORKSPACE:
            return self.local_db
        path = (self.root / f"{check_workspace_name(name)}.duckdb").resolve()
        if path.parent != self.root:
            raise AccessError("a workspace lives inside the workspaces directory")
        return path

    def workspaces(self) -> list[str]:
        names = [r[0] for r in self._con.cursor().execute("SELECT name FROM workspaces ORDER BY 1").fetchall()]
        return ([LOCAL_WORKSPACE] if self.local_db is not None else []) + names

    def create_workspace(self, actor: Principal, name: str) -> None:
        """A new workspace with ``actor`` as its first admin (an admin of any
        workspace may create one; in local mode the local user)."""
        if actor.role != "admin":
            self.audit(actor, "create_workspace", "denied", detail=f"name={name}")
            raise Forbidden("only an admin can create a workspace")
        check_workspace_name(name)
        with self._lock:
            cur = self._con.cursor()
            if cur.execute("SELECT 1 FROM workspaces WHERE name = ?", [name]).fetchone():
                raise AccessError(f"workspace '{name}' exists already")
            now = _now()
            cur.execute("INSERT INTO workspaces VALUES (?, ?, ?)", [name, now, actor.email])
            cur.execute("INSERT INTO members VALUES (?, ?, 'admin', ?, ?)", [name, actor.email.lower(), actor.email,
                                                                             now])
        self.audit(Principal(actor.email, name, "admin"), "create_workspace", "ok", detail=f"name={name}")

    # -- members -------------------------------------------------------------------
    def role_of(self, email: str, workspace: str) -> str | None:
        if self.local_db is not None and workspace == LOCAL_WORKSPACE and email == LOCAL_USER:
            return "admin"
        row = self._con.cursor().execute("SELECT role FROM members WHERE workspace = ? AND email = ?",
                                         [workspace, (email or "").strip().lower()]).fetchone()
        return row[0] if row else None

    def principal(self, email: str, workspace: str) -> Principal:
        """The person's role in ``workspace``, read from the registry now (never
        from the session), so a role change applies on the next run."""
        return Principal(email=email, workspace=workspace, role=self.role_of(email, workspace))

    def workspaces_of(self, email: str) -> list[str]:
        if self.local_db is not None and email == LOCAL_USER:
            return self.workspaces()
        return [r[0] for r in self._con.cursor().execute(
            "SELECT workspace FROM members WHERE email = ? ORDER BY 1", [(email or "").strip().lower()]).fetchall()]

    def members(self, actor: Principal) -> list[tuple[str, str]]:
        authorize(actor, "browse", self)
        return [(e, r) for e, r in self._con.cursor().execute(
            "SELECT email, role FROM members WHERE workspace = ? ORDER BY email", [actor.workspace]).fetchall()]

    def set_member(self, actor: Principal, email: str, role: str | None) -> None:
        """Add, change or (``role`` None) remove a member of the actor's workspace;
        admins only. The last admin cannot be removed or demoted."""
        authorize(actor, "manage_members", self)
        email = (email or "").strip().lower()
        if not EMAIL.fullmatch(email):
            raise AccessError("a member is identified by an email address")
        if role is not None and role not in ROLES:
            raise AccessError(f"role must be one of {', '.join(ROLES)}")
        with self._lock:
            cur = self._con.cursor()
            admins = {r[0] for r in cur.execute("SELECT email FROM members WHERE workspace = ? AND role = 'admin'",
                                                [actor.workspace]).fetchall()}
            if email in admins and role != "admin" and len(admins) == 1:
                raise AccessError("a workspace keeps at least one admin")
            if role is None:
                cur.execute("DELETE FROM members WHERE workspace = ? AND email = ?", [actor.workspace, email])
            else:
                cur.execute("INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?)",
                            [actor.workspace, email, role, actor.email, _now()])
        self.audit(actor, "role_change", "ok", rows=1, detail=f"member={self.keyed_hash(email)} role={role or 'removed'}")

    # -- audit ---------------------------------------------------------------------------
    def keyed_hash(self, value: str) -> str:
        """A short keyed hash of an identifier (the audit log names no one directly)."""
        return "h:" + hmac.new(self._secret, value.strip().lower().encode(), hashlib.sha256).hexdigest()[:16]

    def audit(self, actor: Principal, action: str, outcome: str, *, rows: int | None = None,
              detail: str = "") -> None:
        """Append one entry (the detail scrubbed of anything like an email or a phone)."""
        with self._lock:
            self._con.cursor().execute(
                "INSERT INTO audit_log (logged_at, actor, workspace, action, outcome, n_rows, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_now(), actor.email, actor.workspace, action, outcome, rows, scrub(detail)])

    def audit_log(self, actor: Principal, *, limit: int = 500):
        """The workspace's latest entries, newest first (admins only)."""
        authorize(actor, "manage_members", self)
        return self._con.cursor().sql(
            "SELECT logged_at, actor, action, outcome, n_rows, detail FROM audit_log WHERE workspace = $w "
            "ORDER BY id DESC LIMIT $n", params={"w": actor.workspace, "n": int(limit)}).pl()

    def close(self) -> None:
        self._con.close()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def authorize(principal: Principal, action: str, registry: Registry | None = None, *, detail: str = "") -> None:
    """Raise :class:`Forbidden` (and log the refusal) unless ``principal``'s role
    allows ``action`` in its workspace."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if principal.can(action):
        return
    if registry is not None:
        registry.audit(principal, action, "denied", detail=detail)
    who = "someone who is not a member" if principal.role is None else f"a {principal.role}"
    raise Forbidden(f"{who} of this workspace cannot {action.replace('_', ' ')}")
