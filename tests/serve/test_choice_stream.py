"""``ChoiceStream`` on hand-made events (no model): how a tools reply's text becomes the pieces a stream sends."""

from __future__ import annotations

from typing import Any

from structgen.compile.schema import compile_schema
from structgen.compile.tools import call_text, compile_tools, parse_tool_choice, parse_tools
from structgen.result import Result
from structgen.serve.choice_stream import CallArguments, CallStart, ChoiceStream, Finish, Piece
from structgen.serve.metrics import Metrics
from structgen.serve.openai_api import Plan
from structgen.stream import Delta, Done

ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"],
    "additionalProperties": False}}}
NEG = {"type": "function", "function": {"name": "neg", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}}}


def replay(text: str, step: int = 3) -> list[Piece]:
    """The pieces a parallel-calls stream sends for ``text`` arriving ``step`` characters at a time."""
    tools = parse_tools([ADD, NEG])
    schema = compile_tools(compile_schema(None), tools, parse_tool_choice("required", tools, parallel=True))
    plan = Plan("p", None, {"tools": [ADD, NEG], "tool_choice": "required", "parallel_tool_calls": True})
    stream = ChoiceStream(0, plan, False, None, Metrics(None))
    out: list[Piece] = []
    for end in [*range(step, len(text), step), len(text)]:
        snapshot = text[:end]
        out += stream.pieces(Delta(snapshot[-step:], snapshot, (), (), (), 0, False, ("add", "neg")))
    result: Result[Any] = Result(schema.validate(text), text, [], [], None, "constrained")
    return out + stream.pieces(Done(result))


def test_a_call_streams_and_a_repeated_parallel_call_is_never_sent() -> None:
    first, other = call_text("add", '{"a":1,"b":22}'), call_text("neg", '{"a":5}')
    pieces = replay("\n".join([first, first, other]))
    starts = [p for p in pieces if isinstance(p, CallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "add"), (1, "neg")]   # the repeat got no index
    assert pieces.index(starts[0]) == 0   # announced before any of its arguments
    fragments = {i: [p.fragment for p in pieces if isinstance(p, CallArguments) and p.index == i] for i in (0, 1)}
    assert len(fragments[0]) >= 3 and "".join(fragments[0]) == '{"a":1,"b":22}'   # the first call in pieces
    assert fragments[1] == ['{"a":5}']   # a later call: whole, once complete
    assert isinstance(pieces[-1], Finish) and pieces[-1].reason == "tool_calls"
    assert pieces[-1].result.tool_calls[1].arguments == {"a": 5}
