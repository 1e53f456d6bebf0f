"""Fixture names to a checked load plan: resolve, order, render, guard.

This is the pure half of loading (no database): the plugin, `lint`, `render`
and `check` all go through it, so a fixture is judged the same way everywhere.
Compiled fixtures are cached per (name, content, seed): a file that many tests
use is rendered and parsed once per session.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlfix.compiler import copy_blocks, guard, pgdump
from sqlfix.compiler.cache import DiskCache, cache_key
from sqlfix.compiler.context import DEFAULT_NOW, TemplateContext
from sqlfix.compiler.discovery import (
    FixtureDir,
    FixtureNotFound,
    FixtureOutside,
    dedupe,
    normalize_name,
    read_sql,
)
from sqlfix.compiler.plain import is_plain, plain_fixture
from sqlfix.compiler.plan import (
    Requirement,
    load_order,
    misplaced_requires,
    parse_requires,
    unread_directives,
)
from sqlfix.compiler.render import RenderedFixture, render_template
from sqlfix.compiler.seeds import derive_seed
from sqlfix.errors import Finding, FixtureError, Severity


def display_path(path: Path) -> str:
    """The path as an editor or CI log wants it: relative to the working directory."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def display_dir(path: Path) -> str:
    """A directory for a message: relative to the working directory below it, else absolute
    (`/srv/x`, not `../../../srv/x`)."""
    shown = display_path(path)
    return str(path) if shown.startswith("..") else shown


@dataclass(frozen=True)
class CompiledFixture:
    rendered: RenderedFixture
    statements: tuple[guard.Statement, ...]  # outside COPY blocks
    warnings: tuple[Finding, ...]
    copies: tuple[copy_blocks.CopyBlock, ...] = ()  # COPY ... FROM stdin with their rows

    @property
    def name(self) -> str:
        return self.rendered.name

    def locate(self, offset: int) -> tuple[int, int]:
        return self.rendered.locate(offset)


@dataclass(frozen=True)
class LoadPlan:
    """The fixtures of one test, requirements first: what the loader executes."""

    fixtures: tuple[CompiledFixture, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fixtures)

    def __iter__(self) -> Iterator[CompiledFixture]:
        return iter(self.fixtures)


def _guard_findings(rendered: RenderedFixture, result: guard.GuardResult) -> list[Finding]:
    findings = []
    for v in result.violations:
        line, col = rendered.locate(v.offset)
        findings.append(Finding(v.code, v.message, rendered.path, line, col, v.severity))
    return findings


@dataclass(frozen=True)
class _Scanned:
    result: guard.GuardResult
    copies: tuple[copy_blocks.CopyBlock, ...]
    sql: str  # the text the guard read: COPY blocks blanked out


# SQL statements (outside COPY rows) the guard reads token by token: its memory is a
# few times the text, so above this a fixture is refused; rows in COPY form have no
# such limit (they are not tokenized). docs/fixtures.md states the limit.
MAX_SQL_CHARS = 32 * 1024 * 1024
TOO_LARGE = "SQLF406"


def _scan(rendered: RenderedFixture) -> _Scanned:
    """The guard's verdict, with COPY ... FROM stdin blocks read as data, not as SQL.

    pg_dump's own lines (psql's \\restrict lines, its preamble of settings) are left
    out of the statements to load; see pgdump.py.
    """
    if not copy_blocks.may_hold_copy(rendered.sql):
        found = copy_blocks.Found((), ())
    else:
        found = copy_blocks.find(rendered.sql, rendered.expressions)
    statements_size = len(rendered.sql) - sum(b.end - b.start for b in found.blocks)
    if statements_size > MAX_SQL_CHARS:
        violation = _too_large(statements_size)
        return _Scanned(guard.GuardResult((), (violation,)), (), rendered.sql)
    result, text, _ = copy_blocks.guard_scan(rendered.sql, found)
    statements, preamble = pgdump.split_preamble(result.statements)
    violations = [v for v in result.violations if not (found.blocks and v.code == guard.EMPTY)
                  and not pgdump.inside(preamble, v.offset)]
    violations += found.violations
    violations.sort(key=lambda v: (v.offset, v.code))
    return _Scanned(guard.GuardResult(statements, tuple(violations)), found.blocks, text)


def _too_large(size: int) -> guard.Violation:
    return guard.Violation(
        0, TOO_LARGE, "fixture-too-large",
        f"the fixture's SQL statements are {size / 2**20:.0f} MB, above the "
        f"{MAX_SQL_CHARS // 2**20} MB sqlfix reads statement by statement: write the rows in "
        "COPY form (pg_dump's default; `sqlfix import` keeps it), which has no such limit, or "
        "split the file", Severity.ERROR)


def _quoted_placeholders(rendered: RenderedFixture, sql: str) -> list[Finding]:
    """`'{{ x }}'` and `"{{ x }}"`: values are written as quoted literals, never inside quotes.

    In a string the quotes double up; in a quoted identifier a value would become
    (part of) a name, and a name must be the template's own text.
    """
    findings = []
    names = _quoted_identifiers(sql) if rendered.expressions else []
    for start, _end in rendered.expressions:
        if guard.inside_string(sql, start):
            message = ("{{ }} placeholder inside quotes: sqlfix already writes values as "
                       "quoted SQL literals; drop the quotes around it")
        elif any(first < start <= last for first, last in names):
            message = ('{{ }} placeholder inside a quoted identifier ("..."): a value is '
                       "written as a quoted SQL literal, never as a name; write the name as "
                       "template text (e.g. in a {% for %} over fixed names)")
        else:
            continue
        line, col = rendered.locate(start)
        findings.append(Finding("SQLF204", message, rendered.path, line, col))
    return findings


def _quoted_identifiers(sql: str) -> list[tuple[int, int]]:
    """(first, last) character offsets of each "quoted" or U&"quoted" identifier."""
    if '"' not in sql:
        return []
    from pglast import parser  # PostgreSQL's own scanner (offsets in characters)

    try:
        tokens = parser.scan(sql)
    except parser.ParseError:
        return []  # an unclosed quote: the guard reports it
    quoted = [(t.start, t.end) for t in tokens if t.name in ("IDENT", "UIDENT")]
    return [(a, b) for a, b in quoted if sql[a] == '"' or sql[a : a + 3].lower() == 'u&"']


@dataclass(frozen=True)
class Source:
    """A fixture file as last read: its text and the requirements of its header."""

    path: Path
    stamp: tuple[int, int]  # (mtime_ns, size): when it changes, the file is read again
    text: str
    requires: tuple[Requirement, ...]


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@dataclass
class FixtureLibrary:
    directory: FixtureDir
    seed: int = 0
    now: dt.datetime = DEFAULT_NOW
    locale: str = "en_US"
    disk: DiskCache | None = None  # compiled fixtures shared with other processes and runs
    _cache: dict[tuple[str, str], CompiledFixture] = field(default_factory=dict, repr=False)
    _sources: dict[str, Source] = field(default_factory=dict, repr=False)
    _checked: dict[tuple[str, ...], tuple[CompiledFixture, ...]] = field(
        default_factory=dict, repr=False)  # plans whose ids were checked, see plan()
    # name -> seconds its last real render and guard took (cache hits cost nothing)
    render_seconds: dict[str, float] = field(default_factory=dict, repr=False)

    def path(self, name: str) -> Path:
        return self.directory.resolve(name)

    def source(self, name: str) -> Source:
        """The file of `name`, read once and again only when it changes (one stat a call).

        Tests ask for the same fixtures over and over: this keeps path resolution,
        reading and header parsing off the per-test path. Raises FixtureNotFound, or
        FixtureError (SQLF001) for a file that is not UTF-8.
        """
        cached = self._sources.get(name)
        if cached is not None:
            try:
                if _stamp(cached.path) == cached.stamp:
                    return cached
            except OSError:
                pass  # gone: resolve() below says so
        path = self.path(name)
        stamp, text = _stamp(path), read_sql(path)
        requires = tuple(replace(r, name=normalize_name(r.name)) for r in parse_requires(text))
        self._sources[name] = Source(path, stamp, text, requires)
        return self._sources[name]

    def exists(self, name: str) -> bool:
        if name in self._sources:
            return True
        try:
            self.directory.resolve(name)
        except FixtureOutside:
            raise  # there, but outside: its own error, not "missing"
        except FixtureNotFound:
            return False
        return True

    def requires(self, name: str) -> tuple[Requirement, ...]:
        return self.source(name).requires

    def order(self, names: Iterable[str]) -> list[str]:
        """Requested names plus their requirements, in load order."""
        requested = dedupe(normalize_name(n) for n in names)
        for name in requested:
            self.source(name)  # unknown names fail here, before any requirement
        return load_order(
            requested, self.requires, lambda n: display_path(self.source(n).path), self.exists
        )

    def check(self, name: str) -> tuple[CompiledFixture | None, list[Finding]]:
        """Render and guard one fixture; every finding, errors and warnings."""
        name = normalize_name(name)
        try:
            source = self.source(name)
        except FixtureError as exc:
            return None, list(exc.findings)
        text, shown = source.text, display_path(source.path)
        file_seed = derive_seed(self.seed, name)
        context = TemplateContext(file_seed, self.seed, self.now, self.locale)
        try:
            if is_plain(text) or pgdump.is_dump(text):  # a dump's `{{` is data
                rendered = plain_fixture(text, name=name, path=shown, seed=file_seed)
            else:
                rendered = render_template(text, name=name, path=shown, context=context)
        except FixtureError as exc:
            return None, list(exc.findings)
        scanned = _scan(rendered)
        result = scanned.result
        quoted = _quoted_placeholders(rendered, scanned.sql)
        findings = _guard_findings(rendered, result) + quoted
        # '{{ x }}' renders ''value'', which the parser also rejects: the cause is enough
        lines = {f.line for f in quoted}
        findings = [f for f in findings if f.code != guard.SYNTAX or f.line not in lines]
        findings += [
            Finding("SQLF304", "`-- requires:` below the first line of SQL is not read; move it "
                    "into the comment header at the top of the file", shown, line, col,
                    Severity.WARNING)
            for line, col in misplaced_requires(text)
        ]
        findings += [Finding("SQLF305", message, shown, line, col, Severity.WARNING)
                     for line, col, message in unread_directives(text)]
        findings.sort(key=lambda f: (f.line, f.col, f.code))
        warnings = tuple(f for f in findings if f.severity is Severity.WARNING)
        return CompiledFixture(rendered, result.statements, warnings, scanned.copies), findings

    def compile(self, name: str) -> CompiledFixture:
        """One fixture, checked; raises FixtureError listing every error in it."""
        name = normalize_name(name)
        key = (name, self.source(name).text)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        disk_key = self._disk_key(name, key[1]) if self.disk is not None else ""
        if self.disk is not None and isinstance(found := self.disk.get(disk_key), CompiledFixture):
            self._cache[key] = found
            self.render_seconds[name] = time.perf_counter() - started  # the disk read only
            return found
        compiled, findings = self.check(name)
        self.render_seconds[name] = time.perf_counter() - started
        errors = [f for f in findings if f.severity is Severity.ERROR]
        if errors or compiled is None:
            raise FixtureError(errors)  # never cached: the file is read again next time
        self._cache[key] = compiled
        if self.disk is not None:
            self.disk.put(disk_key, compiled)
        return compiled

    def _disk_key(self, name: str, text: str) -> str:
        """Everything a compiled fixture depends on (see sqlfix.compiler.cache)."""
        shown = display_path(self.source(name).path)
        return cache_key([name, shown, text, str(self.seed), self.now.isoformat(), self.locale])

    def plan(self, names: Iterable[str]) -> LoadPlan:
        """The checked load plan of a test's fixtures; raises FixtureError."""
        fixtures = tuple(self.compile(n) for n in self.order(names))
        key = tuple(f.name for f in fixtures)
        checked = self._checked.get(key)
        # the same compiled objects were checked before (a test's plan repeats per test)
        if checked is None or any(a is not b for a, b in zip(checked, fixtures, strict=True)):
            check_id_collisions(fixtures)
            self._checked[key] = fixtures
        return LoadPlan(fixtures)


def label_ids(fixtures: Iterable[CompiledFixture]) -> set[int]:
    """Every id() value the fixtures rendered, whatever the table."""
    return {value for f in fixtures for _table, _label, value in f.rendered.ids}


def check_id_collisions(fixtures: Iterable[CompiledFixture]) -> None:
    """Two labels of one table with the same id() would merge two rows into one."""
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for fixture in fixtures:
        for table, label, value in fixture.rendered.ids:
            other = seen.setdefault((table, value), (label, fixture.rendered.path))
            if other[0] != label:
                raise FixtureError(
                    [
                        Finding(
                            "SQLF303",
                            f"id({table!r}, {label!r}) and id({table!r}, {other[0]!r}) "
                            f"(in {other[1]}) are the same id {value}; rename one of the labels",
                            fixture.rendered.path,
                        )
                    ]
                )
