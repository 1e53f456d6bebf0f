"""Lint output: one list of findings, one function per format (text, json, github).

- text: `path:line:col: CODE message` (the ruff/flake8 convention), then a summary line.
- json: a list of objects with code, name, severity, message, filename,
  location {row, column} and url (the rule's entry on the docs site), like ruff's.
- github: workflow-command annotations (`::error file=...,line=...,col=...,title=...::`),
  shown on the pull request's diff, then the summary line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlfix.cli.rules import RULES
from sqlfix.errors import Finding, Severity

Formatter = Callable[[Sequence[Finding], int], str]  # findings, number of fixtures checked


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(findings: Sequence[Finding], fixtures: int) -> str:
    if not findings:
        return f"All checks passed ({plural(fixtures, 'fixture')})."
    errors = sum(f.severity is Severity.ERROR for f in findings)
    files = len({f.path for f in findings})
    return (
        f"Found {plural(len(findings), 'finding')} ({plural(errors, 'error')}, "
        f"{plural(len(findings) - errors, 'warning')}) in {plural(files, 'file')}."
    )


def record(finding: Finding) -> dict[str, Any]:
    """A finding as a JSON object, with its rule's name and documentation link."""
    rule = RULES.get(finding.code)
    return {
        "code": finding.code,
        "name": rule.name if rule else None,
        "severity": finding.severity.value,
        "message": finding.message,
        "filename": finding.path,
        "location": {"row": finding.line, "column": finding.col},
        "url": rule.url if rule else None,
    }


def text(findings: Sequence[Finding], fixtures: int) -> str:
    lines = [f.format() for f in findings]
    return "\n".join([*lines, summary(findings, fixtures)]) + "\n"


def as_json(findings: Sequence[Finding], fixtures: int) -> str:
    return json.dumps([record(f) for f in findings], indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def annotation(finding: Finding) -> str:
    """A GitHub Actions workflow command: an error or warning on the file's line."""
    level = "warning" if finding.severity is Severity.WARNING else "error"
    props = ",".join(
        f"{key}={_escape_property(str(value))}"
        for key, value in (
            ("file", finding.path),
            ("line", finding.line),
            ("col", finding.col),
            ("title", finding.code),
        )
    )
    return f"::{level} {props}::{_escape_data(finding.message)}"


def github(findings: Sequence[Finding], fixtures: int) -> str:
    return "\n".join([*(annotation(f) for f in findings), summary(findings, fixtures)]) + "\n"


FORMATS: dict[str, Formatter] = {"text": text, "json": as_json, "github": github}
