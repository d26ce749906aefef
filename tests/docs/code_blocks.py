"""The fenced code blocks of Markdown files, and how the docs tests run them (``tests/docs/test_code_blocks.py``).

A block is a fence whose info string starts with ``python`` or ``bash`` (``sh``, ``shell``); others (``text``,
``json``, ``console``) are prose. An HTML comment on the line before a block marks it::

    <!-- test: slow (why) -->     only under -m slow
    <!-- test: gpu (why) -->      only under -m gpu
    <!-- test: server -->         slow; against a structgen serve on the bundled model (127.0.0.1:8000 points at it)
    <!-- test: hosted -->         slow; against llama-cpp-python's server (127.0.0.1:8080 points at it)
    <!-- test: skip (why) -->     never; reported as skipped with its reason
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
MARKS = ("slow", "gpu", "server", "hosted", "skip")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_MARK = re.compile(r"^\s*<!--\s*test:\s*(?P<mark>\w+)\s*(?P<why>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One runnable block: where it is, its language, its code (dedented) and its mark."""

    path: Path
    line: int               # 1-based line of the opening fence
    language: str           # "python" or "bash"
    code: str
    mark: str | None = None
    why: str = ""


def blocks(path: Path) -> list[Block]:
    """The python and bash blocks of a Markdown file, in order. Raises ``ValueError`` for an unknown mark or an
    unclosed fence (a typo must not turn a test off)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)
                    and lines[j].strip().strip(fence[0]) == ""), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: unclosed code fence")
        language = LANGUAGES.get(opening["info"].lower())
        mark, why = _mark(path, lines[i - 1] if i > 0 else "", i)
        if language is not None:
            code = textwrap.dedent("\n".join(line[indent:] if line[:indent].strip() == "" else line
                                             for line in lines[i + 1:end]))
            found.append(Block(path, i + 1, language, code + "\n", mark, why))
        i = end + 1
    return found


def _mark(path: Path, line: str, at: int) -> tuple[str | None, str]:
    m = _MARK.match(line)
    if m is None:
        return None, ""
    if m["mark"] not in MARKS:
        raise ValueError(f"{path}:{at}: unknown mark {m['mark']!r}; one of {', '.join(MARKS)}")
    return m["mark"], m["why"].strip("() ")
