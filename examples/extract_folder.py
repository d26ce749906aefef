"""Extract one schema from every ``.txt`` file of a folder, grounded in each file's text; one JSON line per file.

    python examples/extract_folder.py [FOLDER]      # default: examples/letters

Every string is copied from its file (``source=``), so nothing is invented; a file that yields no valid value is
reported with its typed error and the others go on. For thousands of files, ``structgen batch run FOLDER --schema
... --source`` does the same as a resumable job.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, Field

import structgen

SPAN = {"x-source": "span"}   # a number: only one written in the text


class Order(BaseModel):
    customer: str = Field(description="the person or business ordering")
    product: str
    quantity: int = Field(ge=1, json_schema_extra=SPAN)
    city: str


def main(folder: Path = Path(__file__).parent / "letters", max_tokens: int = 96) -> dict[str, Order | str]:
    """Extract an ``Order`` from each ``.txt`` file of ``folder``; print and return them (or the error) by name."""
    found: dict[str, Order | str] = {}
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        try:
            value: Order | str = structgen.generate("Extract the order.", schema=Order, source=text, seed=0,
                                                    max_tokens=max_tokens).value
            print(json.dumps({"file": path.name, **value.model_dump()}))
        except structgen.StructgenError as exc:
            value = f"{type(exc).__name__}: {exc}"
            print(json.dumps({"file": path.name, "error": value}))
        found[path.name] = value
    return found


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "letters")
