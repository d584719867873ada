"""The README's examples as data: a test runs what a reader would type, and fails when the
README's example does (an example kept in a test's own copy could rot unnoticed)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ROOT

README = ROOT / "README.md"
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")
_FENCE = re.compile(r"^```(\w*) *$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language (`sh`, `json`, or empty) and its text."""

    language: str
    text: str

    def commands(self) -> list[str]:
        """Its shell command lines as a shell reads them: comments dropped, lines ended by a
        backslash joined to the next, blank lines left out."""
        joined = re.sub(r"\\\n", " ", self.text)
        lines = (_without_comment(line).strip() for line in joined.splitlines())
        return [line for line in lines if line]


def section(heading: str, readme: Path = README) -> str:
    """The text under the heading named `heading`, up to the next heading of its level or
    above (its subsections included). A `#` line inside a code block is no heading."""
    lines = readme.read_text().splitlines()
    level = 0
    fenced = False
    found: list[str] = []
    for line in lines:
        fenced = fenced != line.startswith("```")
        match = None if fenced else _HEADING.match(line)
        if level and match and len(match.group(1)) <= level:
            break
        if level:
            found.append(line)
        elif match and match.group(2) == heading:
            level = len(match.group(1))
    assert level, f"README.md has no heading {heading!r}"
    return "\n".join(found) + "\n"


def blocks(markdown: str) -> list[Block]:
    """The fenced code blocks of `markdown`, in order."""
    found: list[Block] = []
    language: str | None = None
    body: list[str] = []
    for line in markdown.splitlines():
        fence = _FENCE.match(line)
        if language is None and fence:
            language, body = fence.group(1), []
        elif language is not None and line.rstrip() == "```":
            found.append(Block(language, "\n".join(body) + "\n"))
            language = None
        elif language is not None:
            body.append(line)
    return found


def block_with(found: list[Block], needle: str, language: str = "sh") -> Block:
    """The first block of `language` whose text holds `needle`."""
    for block in found:
        if block.language == language and needle in block.text:
            return block
    raise AssertionError(f"no ```{language} block holding {needle!r} in that part of README.md")


def exports(command: str) -> dict[str, str]:
    """The variables of one `export NAME=value ...` line."""
    words = shlex.split(command)
    assert words[:1] == ["export"], f"not an export line: {command!r}"
    pairs = [word.partition("=") for word in words[1:]]
    assert all(sep for _, sep, _ in pairs), f"an export without a value: {command!r}"
    return {name: value for name, _, value in pairs}


def _without_comment(line: str) -> str:
    """`line` up to a `#` that starts a shell comment: at the start or after a blank, outside
    quotes (`'#'` or `"a#b"` stay)."""
    quote = ""
    for index, character in enumerate(line):
        if quote:
            quote = "" if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line
