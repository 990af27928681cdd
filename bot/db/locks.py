"""Locks over the database (Atlantis' locking package, on SQL): a held lock is a row whose primary
key is the lock's name, so at most one holder exists across every bot process.

All functions work inside the caller's transaction, so taking a lock and starting the operation
that needs it commit together — or not at all.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db.tables import Lock


def try_lock(s: Session, key: str, op_id: int) -> int | None:
    """Take `key` for `op_id`.

    Returns op_id when taken (or already held by op_id), the holder's operation id when another
    operation holds it, and None when it was held at insert time but freed before we could read
    the holder (ask again on the next round rather than guess).
    """
    holder = s.scalar(select(Lock.operation_id).where(Lock.key == key))
    if holder is not None:
        return holder
    try:
        with s.begin_nested():
            s.add(Lock(key=key, operation_id=op_id))
    except IntegrityError:
        return s.scalar(select(Lock.operation_id).where(Lock.key == key))
    return op_id


def unlock(s: Session, key: str, op_id: int) -> None:
    """Release `key` if `op_id` holds it; another holder's lock is never touched."""
    s.execute(delete(Lock).where(Lock.key == key, Lock.operation_id == op_id))


def held(s: Session) -> list[Lock]:
    return list(s.scalars(select(Lock).order_by(Lock.acquired_at)).all())
