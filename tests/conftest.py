"""Shared fixtures: a tiny hand-written store whose KPIs were computed by hand."""

from __future__ import annotations

import socket
import subprocess
from datetime import date, datetime

import polars as pl
import pytest

from data.store import Store


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for an app server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a server a test started: terminate, then kill if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def tiny_frames() -> dict[str, pl.DataFrame]:
    """Six customers, eleven orders, five survey answers (see tests/test_kpis.py).

    C's only order is cancelled; E also has a refunded order; B's second order is at
    23:30 on the last day of March; F's second order is at 00:00 on 1 April.
    """
    customers = pl.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E", "F"],
            "name": ["An", "Bình", "Chi", "Dũng", "Em", "Phúc"],
            "region": ["Hà Nội", "Hà Nội", "Hà Nội", "TP. Hồ Chí Minh", "TP. Hồ Chí Minh", "TP. Hồ Chí Minh"],
        }
    )
    orders = pl.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(1, 12)],
            "customer_id": ["A", "A", "A", "B", "B", "C", "D", "E", "E", "F", "F"],
            "ordered_at": [
                dt("2024-01-10 10:00"), dt("2024-02-20 10:00"), dt("2024-03-05 10:00"),
                dt("2024-02-10 10:00"), dt("2024-03-31 23:30"), dt("2024-03-10 10:00"),
                dt("2024-01-05 10:00"), dt("2024-03-15 10:00"), dt("2024-03-20 10:00"),
                dt("2024-02-28 10:00"), dt("2024-04-01 00:00"),
            ],
            "revenue": [100.0, 200, 300, 50, 150, 500, 80, 120, 60, 40, 70],
            "gross_margin": [30.0, 60, 90, None, 45, 150, 20, 40, 18, 10, 20],
            "channel": ["website", "website", "shopee", "website", "website", "website",
                        "store", "store", "store", "shopee", "shopee"],
            "status": ["completed"] * 5 + ["cancelled"] + ["completed"] * 2 + ["refunded"] + ["completed"] * 2,
        }
    )
    responses = pl.DataFrame(
        {
            "response_id": ["R1", "R2", "R3", "R4", "R5"],
            "customer_id": ["A", "B", None, "E", "F"],
            "responded_at": [dt("2024-03-06 09:00"), dt("2024-03-20 09:00"), dt("2024-03-25 09:00"),
                             dt("2024-03-31 22:00"), dt("2024-02-15 09:00")],
            "nps": [10, 6, 8, 9, 3],
            "csat": [5, 3, 4, None, 2],
            "ces": [2, None, 4, 6, 7],
            "channel": ["shopee", "website", "website", "store", "shopee"],
        }
    )
    members = pl.DataFrame({"customer_id": ["A", "D"], "enrolled_at": [dt("2024-01-01"), dt("2024-01-01")], "tier": ["gold", "member"]})
    referrals = pl.DataFrame({"referral_id": ["X1"], "referrer_id": ["A"], "referred_id": ["E"], "referred_at": [dt("2024-03-15 10:00")], "reward_cost": [50.0]})
    return {"customers": customers, "orders": orders, "survey_responses": responses,
            "loyalty_members": members, "referrals": referrals}


@pytest.fixture()
def tiny_store() -> Store:
    store = Store(":memory:")
    store.load_frames(tiny_frames(), kind="test")
    yield store
    store.close()


@pytest.fixture()
def empty_store() -> Store:
    store = Store(":memory:")
    yield store
    store.close()


MARCH = (date(2024, 3, 1), date(2024, 3, 31))
FEBRUARY = (date(2024, 2, 1), date(2024, 2, 29))
