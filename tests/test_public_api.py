import structgen


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in dir(structgen) if (not name.startswith("_") and name[0].isupper()) or name in {
        "generate", "default_model", "default_model_path", "compile_schema", "bundled_grammars"}}
    assert structgen.__all__ == sorted(structgen.__all__, key=str.casefold) or structgen.__all__ == sorted(
        structgen.__all__)
    assert public <= set(structgen.__all__)
    for name in structgen.__all__:
        assert hasattr(structgen, name), name


def test_every_public_name_has_a_docstring() -> None:
    for name in structgen.__all__:
        obj = getattr(structgen, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_errors_share_one_root() -> None:
    for name in ("SchemaError", "GrammarError", "TruncatedOutput", "ValidationFailed", "BackendError",
                 "ModelNotFound", "InvalidArgument", "ParseError", "GenerationError", "Overloaded",
                 "DeadlineExceeded", "Cancelled"):
        assert issubclass(getattr(structgen, name), structgen.StructgenError)


# The agreed public API. A change here is a decision, made on purpose, with this list edited in the same commit
# (the concurrent engine added stream / astream, their events, Partial, Overloaded, DeadlineExceeded, Cancelled;
# tool calls added Tool, ToolCall, ToolCalls; verifier selection added Judge; streamed tool calls added
# PartialToolCall, what Delta.tool_calls holds).
PUBLIC_API = [
    "Attempt", "BackendError", "Cancelled", "Choice", "DatabaseError", "DeadlineExceeded", "Delta", "Done", "Fault",
    "FaultProxy", "GenerationError", "Grammar", "GrammarError", "InvalidArgument", "JsonOptions", "Judge", "LlamaCpp",
    "Model", "ModelNotFound", "OpenAICompatible", "OptionProbs", "Overloaded", "ParseError", "Partial", "PartialToolCall", "Regex",
    "Reset", "Result", "SamplingParams", "SchemaError", "StreamEvent", "StructgenError", "Timings",
    "Tool", "ToolCall", "ToolCalls", "TruncatedOutput", "UnsafeSQL", "ValidationFailed", "__version__", "agenerate", "astream", "bundled_grammars",
    "compile_schema", "default_model", "default_model_path", "generate", "generate_batch", "probs",
    "resolve_model_path", "stream",
]


def test_the_public_api_is_the_agreed_one() -> None:
    assert structgen.__all__ == PUBLIC_API
