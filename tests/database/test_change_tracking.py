"""Which tables changed since the baseline (the committed mode's restore), and the DSN as a URL."""

from __future__ import annotations

import psycopg
import pytest

from sqlfix.database.baseline import capture, restore
from sqlfix.database.committed import ChangeTracker, as_url
from sqlfix.database.schema import connect

SCHEMA = """
CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
CREATE TABLE grandchild (id int PRIMARY KEY, child_id int REFERENCES child (id));
CREATE TABLE other (id serial PRIMARY KEY, v text);
CREATE SCHEMA "odd schema";
CREATE TABLE "odd schema"."Other table" (v text);
INSERT INTO parent VALUES (1, 'seed'), (2, 'seed');
"""
ALL_PARENT = {("public", "parent"), ("public", "child"), ("public", "grandchild")}


@pytest.fixture
def tracked(fresh_dsn):
    with psycopg.connect(fresh_dsn) as setup:
        setup.execute(SCHEMA)
    conn = connect(fresh_dsn)
    baseline = capture(conn)
    writer = psycopg.connect(fresh_dsn, autocommit=True)  # the code under test's connection
    yield conn, baseline, ChangeTracker(conn, baseline), writer
    writer.close()
    conn.close()


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT 1", set()),
        ("SELECT * FROM parent FOR UPDATE", set()),  # locks rows, changes nothing
        ("UPDATE parent SET v = 'x' WHERE id = 2", ALL_PARENT),
        ("UPDATE parent SET v = v WHERE id = 1", ALL_PARENT),  # same value, still a new row version
        ("DELETE FROM parent WHERE id = 2", ALL_PARENT),
        ("TRUNCATE parent CASCADE", ALL_PARENT),
        ("INSERT INTO child VALUES (1, 1)", {("public", "child"), ("public", "grandchild")}),
        ("INSERT INTO other (v) VALUES ('a')", {("public", "other")}),
        ("INSERT INTO \"odd schema\".\"Other table\" VALUES ('a')", {("odd schema", "Other table")}),
        ("BEGIN; INSERT INTO other (v) VALUES ('a'); ROLLBACK", set()),  # never visible
        ("BEGIN; DELETE FROM parent; ROLLBACK", set()),
    ],
)
def test_changed_tables_and_those_referencing_them(tracked, statement, expected):
    conn, _, tracker, writer = tracked
    writer.execute(statement)
    assert tracker.to_restore(conn) == expected


def test_restore_of_the_changed_tables_returns_to_the_baseline(tracked):
    conn, baseline, tracker, writer = tracked
    writer.execute("INSERT INTO child VALUES (1, 1); INSERT INTO other (v) VALUES ('a')")
    writer.execute("UPDATE parent SET v = 'changed'")
    tables = tracker.to_restore(conn)
    account = restore(conn, baseline, tables)
    assert "truncated 4 tables" in account and "into 1" in account
    tracker.restored(conn, tables)
    assert tracker.to_restore(conn) == set()
    rows = conn.execute("SELECT (SELECT string_agg(v, ',' ORDER BY id) FROM parent), "
                        "(SELECT count(*) FROM child), (SELECT count(*) FROM other)").fetchone()
    assert rows == ("seed,seed", 0, 0)
    assert conn.execute("SELECT nextval('other_id_seq')").fetchone() == (1,)  # sequence reset
    conn.rollback()


@pytest.mark.parametrize(
    ("dsn", "url"),
    [
        ("host=/tmp/sock port=5432 user=postgres dbname=app_test",
         "postgresql://postgres@/app_test?port=5432&host=%2Ftmp%2Fsock"),
        ("host=db.example port=6543 user=me password=p@ss:w/ord dbname=my_test sslmode=require",
         "postgresql://me:p%40ss%3Aw%2Ford@db.example:6543/my_test?sslmode=require"),
        ("postgresql://u@h/x_test", "postgresql://u@h/x_test"),
        # several hosts: a netloc of h1%2Ch2:5432,5433 was a URL libpq could not connect by
        ("host=h1,h2 port=5432,5433 dbname=a_test",
         "postgresql:///a_test?port=5432%2C5433&host=h1%2Ch2"),
        ("host=h1,h2 port=5432 dbname=a_test", "postgresql:///a_test?port=5432&host=h1%2Ch2"),
    ],
)
def test_dsn_as_url_means_the_same_to_libpq(dsn, url):
    assert as_url(dsn) == url
    same = psycopg.conninfo.conninfo_to_dict
    assert same(as_url(dsn)) == same(dsn)


@pytest.mark.parametrize("dsn", [
    "host=db port=5 user=u password=sek dbname=a_test",
    "host=db user=u password=sek sslpassword=sek2 dbname=a_test",
    "postgresql://u:sek@db:5/a_test?sslpassword=sek2",
    "host=h1,h2 port=5432,5433 user=u password=sek dbname=a_test",
])
def test_the_database_url_shows_no_secret_in_its_repr(dsn):
    from sqlfix.database.committed import DatabaseUrl

    url = DatabaseUrl(as_url(dsn))
    assert str(url) == as_url(dsn) and "sek" not in repr(url) and "sek" not in url.masked
    same = psycopg.conninfo.conninfo_to_dict
    shown = same(url.masked)
    assert shown == {**same(dsn), **{k: "***" for k in ("password", "sslpassword")
                                      if k in same(dsn)}}
