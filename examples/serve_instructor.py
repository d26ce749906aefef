"""Serve the bundled model over the OpenAI API and call it with instructor, unchanged.

    python examples/serve_instructor.py

The server is ``structgen serve``'s app, run in this process on a free 127.0.0.1 port
(``structgen.testing.app_server.serving``); with ``structgen serve --port 8000`` running instead, point
``base_url`` at ``http://127.0.0.1:8000/v1``. instructor sends the model's JSON Schema as a tool (``Mode.TOOLS``) or
as ``response_format`` (``Mode.JSON_SCHEMA``); the server enforces it, so instructor's own validation never fails on
the form of the reply.
"""

from __future__ import annotations

import instructor
import openai
from pydantic import BaseModel, Field

import structgen
from structgen.testing.app_server import serving


class Ticket(BaseModel):
    title: str = Field(max_length=60)
    priority: str = Field(pattern="^(low|medium|high)$")


ASK = "The checkout page crashes for every customer since this morning. File a ticket."


MODES = (instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA)


def main(modes: tuple[instructor.Mode, ...] = MODES, max_tokens: int = 80) -> list[Ticket]:
    """One ticket per instructor mode, each validated by instructor; printed and returned."""
    tickets = []
    with serving(structgen.default_model()) as base_url:
        for mode in modes:
            client = instructor.from_openai(openai.OpenAI(base_url=base_url, api_key="unused"), mode=mode)
            ticket = client.chat.completions.create(model="structgen", response_model=Ticket, max_retries=0,
                                                    messages=[{"role": "user", "content": ASK}],
                                                    temperature=0, max_tokens=max_tokens)
            print(mode.value, ticket)
            tickets.append(ticket)
    return tickets


if __name__ == "__main__":
    main()
