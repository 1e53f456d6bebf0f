"""`check`'s row counts: plain SQL (no libxml needed), every schema, partitions once."""

from __future__ import annotations

import psycopg

from sqlfix.cli.check import count_rows


def test_counts_every_user_table_once_without_xml_functions(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute('''
            CREATE TABLE plain (id int);
            CREATE SCHEMA "Odd Schema";
            CREATE TABLE "Odd Schema"."we'ird ""name""" (id int);
            CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
            CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE SCHEMA _sqlfix_internal;
            CREATE TABLE _sqlfix_internal.state (id int);
            INSERT INTO plain SELECT generate_series(1, 3);
            INSERT INTO "Odd Schema"."we'ird ""name""" VALUES (1);
            INSERT INTO events VALUES (1, '2024-05-01'), (2, '2024-06-01');
            INSERT INTO _sqlfix_internal.state VALUES (1);
        ''')
        counts = count_rows(conn)
    assert counts == {
        "plain": 3,
        'Odd Schema.we\'ird "name"': 1,
        "events": 0,  # a partitioned table holds no rows itself
        "events_2024": 2,
    }


def test_an_empty_database_has_no_counts(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn) as conn:
        assert count_rows(conn) == {}
