"""Fixtures: one real PostgreSQL server for the session, and a fresh database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from .server import PgServer

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """Started once, stopped at the end. No server binaries is a failure, never a skip."""
    try:
        server = PgServer()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[PgServer]:
    """The server, running (a test that stopped it gets it started again)."""
    yield pg_server
    if not _up(pg_server):
        pg_server.start()


@pytest.fixture
def dsn(pg: PgServer) -> str:
    """The DSN of a new, empty database."""
    name = f"t{next(_names)}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.dsn(name)


def _up(server: PgServer) -> bool:
    try:
        psycopg.connect(server.dsn(), connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True
