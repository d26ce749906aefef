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
                 "ModelNotFound", "InvalidArgument", "ParseError", "GenerationError"):
        assert issubclass(getattr(structgen, name), structgen.StructgenError)
