"""`sqlfix lint`: every finding in fixture files, without a database.

Per file: `FixtureLibrary.check` (render, statement guard, quoted placeholders)
and the file's requirements (`-- requires:` order, cycles, id() collisions with
what it loads). With a tests directory: fixtures no test uses (SQLF601) and
`uses()` names that are no fixture (SQLF602). Findings are then deduplicated (a
cycle is one finding, however many files are in it) and filtered by
`-- sqlfix: noqa` comments and by select/ignore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlfix.cli import rules, usage
from sqlfix.cli.targets import Target, UsageError, Workspace
from sqlfix.compiler import guard
from sqlfix.compiler.discovery import normalize_name
from sqlfix.compiler.library import display_dir, display_path
from sqlfix.compiler.since import needed_version
from sqlfix.config import Settings
from sqlfix.errors import Finding, FixtureError, Severity

_CYCLE = re.compile(r"cycle: (?P<chain>.+?); ")
_NOQA_BODY = r"\s*sqlfix:\s*noqa\b(?:\s*:\s*(?P<codes>[A-Z0-9]+(?:\s*,\s*[A-Z0-9]+)*))?"
# An SQL comment in .sql files, a Python one in test files (SQLF602 points there).
_NOQA = {
    "--": re.compile(r"--" + _NOQA_BODY, re.IGNORECASE),
    "#": re.compile(r"#" + _NOQA_BODY, re.IGNORECASE),
}


@dataclass(frozen=True)
class LintOptions:
    select: frozenset[str] | None = None  # rule codes; None: every rule
    ignore: frozenset[str] = frozenset()
    tests: Path | None = None  # where to look for uses() (SQLF601, SQLF602)
    # server_version, when set: (its major, where it was set), for SQLF407
    server: tuple[int, str] | None = None

    def enabled(self, code: str) -> bool:
        return (self.select is None or code in self.select) and code not in self.ignore


@dataclass(frozen=True)
class LintResult:
    findings: tuple[Finding, ...]
    targets: tuple[Target, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)


def _codes(values: Sequence[str], where: str) -> frozenset[str]:
    try:
        return rules.expand(values, where)
    except rules.UnknownCode as exc:
        raise UsageError(str(exc)) from None


def lint_options(
    settings: Settings,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    tests: Path | None = None,
) -> LintOptions:
    """Options from the command line, else from `[tool.sqlfix.lint]`; raises UsageError."""
    config = settings.lint
    where = f"{display_path(settings.root / 'pyproject.toml')} [tool.sqlfix.lint]"
    chosen: frozenset[str] | None = None
    if select is not None:
        chosen = _codes(select, "--select")
    elif "select" in config:
        chosen = _codes(config["select"], f"{where} select")
    if ignore is None:
        ignored = _codes(config.get("ignore", []), f"{where} ignore")
    else:
        ignored = _codes(ignore, "--ignore")
    if tests is None and config.get("tests"):
        tests = settings.root / config["tests"]
    if tests is not None and not tests.is_dir():
        raise UsageError(f"the tests directory {display_dir(tests)} does not exist")
    if chosen is not None and not chosen:
        raise UsageError("select names no rule: every rule would be off; list codes such as "
                         "SQLF1 or SQLF501, or leave select out for all rules")
    server = None
    if settings.server_version is not None:
        where = settings.source("server_version")
        server = (int(settings.server_version), f'{settings.option("server_version")} = '
                  f'"{settings.server_version}"' + (f" in {where}" if where else ""))
    return LintOptions(chosen, ignored, tests, server)


def lint(workspace: Workspace, targets: Sequence[Target], options: LintOptions) -> LintResult:
    """Every finding in `targets` that is enabled and not silenced, sorted by place."""
    found: list[Finding] = []
    for target in targets:
        found.extend(_file_findings(workspace, target))
        if options.server is not None:
            found.extend(_version_findings(workspace, target, *options.server))
    if options.tests is not None:
        found.extend(_test_findings(workspace, targets, options.tests))
    noqa = _Noqa()
    kept = [f for f in dedupe(found) if options.enabled(f.code) and not noqa.silences(f)]
    kept.sort(key=lambda f: (f.path, f.line, f.col, f.code))
    return LintResult(tuple(kept), tuple(targets))


def _file_findings(workspace: Workspace, target: Target) -> list[Finding]:
    _compiled, findings = workspace.check(target)  # SQLF001 (not UTF-8) comes from here too
    return [*findings, *_requirement_findings(workspace, target)]


def _version_findings(workspace: Workspace, target: Target, major: int, setting: str
                      ) -> list[Finding]:
    """SQLF407: statements the configured server_version's grammar lacks (MERGE on 14),
    judged as the loader judges a syntax error (sqlfix.compiler.since)."""
    compiled, _ = workspace.check(target)
    if compiled is None:  # it does not render: its own findings say why
        return []
    found = []
    for statement in compiled.statements:
        needed = needed_version(statement.text)
        if needed is not None and needed[0] // 10000 > major:
            line, col = compiled.locate(statement.offset)
            found.append(Finding(
                "SQLF407", f"{needed[1]} needs PostgreSQL {needed[0] // 10000} or later, and "
                f"{setting}; rewrite the statement for {major}, or test on a newer server",
                target.shown, line, col))
    return found


def _requirement_findings(workspace: Workspace, target: Target) -> list[Finding]:
    """Missing requirements, cycles, and id() collisions with what the file loads."""
    # Every missing name of this file's own header; the planner stops at the first.
    try:
        own = workspace.requires(target.key)
    except FixtureError:
        return []  # unreadable: its own finding (SQLF001) says so
    found = [
        Finding("SQLF301", f"requires names a missing fixture {req.name!r} "
                f"({target.key} -> {req.name}); fix the name or add the file",
                target.shown, req.line, req.col)
        for req in own
        if not workspace.library.exists(req.name)
    ]
    try:
        workspace.id_collisions(workspace.order(target))
    except FixtureError as exc:
        found.extend(exc.findings)  # the same missing name twice: dedupe() keeps one
    return found


def _test_findings(workspace: Workspace, targets: Sequence[Target], tests: Path) -> list[Finding]:
    uses = usage.scan(tests)
    used = {normalize_name(u.name) for u in uses}
    for name in workspace.directory.names():
        try:
            used.update(normalize_name(r.name) for r in workspace.requires(name))
        except FixtureError:
            continue  # SQLF001, reported with the file itself
    candidates = [(t.key, t.shown) for t in targets if not t.outside]
    return [
        *usage.missing(uses, workspace.directory),
        *usage.unused(candidates, used, display_path(tests)),
    ]


def _identity(finding: Finding) -> tuple[object, ...]:
    """What makes two findings the same problem.

    The same place and code, whatever the message: a statement repeated by a
    Jinja loop, or a missing requirement reached through different files (whose
    messages show different chains). A cycle is one problem whichever file of it
    the chain starts from.
    """
    cycle = _CYCLE.search(finding.message) if finding.code == "SQLF302" else None
    if cycle is not None:
        return (finding.code, frozenset(cycle.group("chain").split(" -> ")))
    return (finding.code, finding.path, finding.line, finding.col)


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per problem: the first seen, or the shortest message (the direct chain)."""
    best: dict[tuple[object, ...], Finding] = {}
    for finding in findings:
        key = _identity(finding)
        if key not in best or len(finding.message) < len(best[key].message):
            best[key] = finding
    return list(best.values())


@dataclass
class _Noqa:
    """`-- sqlfix: noqa` (every rule) or `-- sqlfix: noqa: SQLF101, SQLF501` on a line."""

    _lines: dict[str, list[str]] = field(default_factory=dict)

    def _line(self, path: str, line: int) -> str:
        if path not in self._lines:
            try:
                # split("\n"), as the renderer counts lines; splitlines() knows more breaks
                self._lines[path] = Path(path).read_text(encoding="utf-8-sig").split("\n")
            except (OSError, UnicodeDecodeError):
                self._lines[path] = []
        lines = self._lines[path]
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def silences(self, finding: Finding) -> bool:
        rule = rules.RULES.get(finding.code)
        if rule is None or not rule.silenceable:
            return False  # the loader refuses the fixture whatever the comment says
        line = self._line(finding.path, finding.line)
        pattern = _NOQA["#" if finding.path.endswith(".py") else "--"]
        match = next((m for m in pattern.finditer(line)
                      if not guard.inside_string(line, m.start())), None)
        if match is None:
            return False
        if match.group("codes") is None:
            return True
        codes = [c.strip().upper() for c in match.group("codes").split(",")]
        return any(finding.code.startswith(c) for c in codes)
