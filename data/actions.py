"""The protected actions, each checked on the server and logged (no Streamlit here).

Every function takes the acting :class:`data.access.Principal` and the
:class:`data.access.Registry`, checks the role first (:func:`data.access.authorize`:
a refusal raises :class:`data.access.Forbidden` and is logged as ``denied``), then
does the work and logs it: who, what, how many rows, never a customer's personal
data. Pages call these, never the store's writing methods directly, so hiding a
button is never the only protection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from data.access import Principal, Registry, authorize
from data.store import Store


def load_import(who: Principal, registry: Registry, store: Store, report: Any, *, mode: str,
                accept_valid: bool) -> int:
    """Load a checked file (:func:`data.importer.load`); analysts and admins."""
    from data import importer

    authorize(who, "import", registry, detail=f"kind={report.kind}")
    iid = importer.load(store, report, mode=mode, accept_valid=accept_valid)
    rows = store.imports().filter(pl.col("import_id") == iid)["rows_loaded"]
    registry.audit(who, "import", "ok", rows=int(rows[0]) if rows.len() else None,
                   detail=f"import={iid} kind={report.kind} mode={mode}")
    return iid


def undo_import(who: Principal, registry: Registry, store: Store, import_id: int) -> dict[str, int]:
    """Undo an import (:meth:`data.store.Store.undo_import`); analysts and admins."""
    authorize(who, "undo", registry, detail=f"import={import_id}")
    done = store.undo_import(int(import_id))
    registry.audit(who, "undo", "ok", rows=done["removed"], detail=f"import={import_id} restored={done['restored']}")
    return done


def rebuild_demo(who: Principal, registry: Registry, store: Store, *, customers: int, seed: int) -> dict:
    """Replace the workspace's data with generated demo data; admins only."""
    from data import demo

    authorize(who, "rebuild_demo", registry)
    truth = demo.build(store, customers=int(customers), seed=int(seed))
    registry.audit(who, "rebuild_demo", "ok", rows=int(truth["counts"]["orders"]),
                   detail=f"customers={customers} seed={seed}")
    return truth


def export(who: Principal, registry: Registry, what: str, build: Callable[[], pl.DataFrame], *,
           unmasked: bool = False) -> pl.DataFrame:
    """An export's frame, built by ``build`` only once allowed: masked exports for
    every member, unmasked ones (contacts in clear) for admins only, and then logged
    as an unmasking too."""
    authorize(who, "export_unmasked" if unmasked else "export", registry, detail=f"export={what}")
    frame = build()
    registry.audit(who, "export", "ok", rows=frame.height, detail=f"export={what} masked={not unmasked}")
    if unmasked:
        registry.audit(who, "unmask", "ok", rows=frame.height, detail=f"export={what}")
    return frame


def unmask(who: Principal, registry: Registry, what: str, rows: int) -> None:
    """Allow showing personal data in clear on screen (admins only), and log it."""
    authorize(who, "unmask", registry, detail=f"view={what}")
    registry.audit(who, "unmask", "ok", rows=rows, detail=f"view={what}")


def forget_customer(who: Principal, registry: Registry, store: Store, identifier: str, *,
                    clear_caches: Callable[[], None] | None = None) -> dict[str, int]:
    """Remove a customer (by id, email or phone) from every table of the workspace,
    undo copies and quarantine included (:meth:`data.store.Store.forget`), then clear
    cached results (``clear_caches``); admins only. The log holds a keyed hash of
    the identifier and the rows removed, not the identifier."""
    authorize(who, "forget_customer", registry)
    keys = store.find_customers(identifier)
    removed = store.forget(keys) if keys else {}
    if clear_caches is not None:
        clear_caches()
    registry.audit(who, "forget_customer", "ok", rows=sum(removed.values()),
                   detail=f"subject={registry.keyed_hash(identifier)} customers={len(keys)} "
                          f"tables={','.join(sorted(removed))}")
    return removed
