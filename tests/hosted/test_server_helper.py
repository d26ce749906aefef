"""``structgen.testing.llama_server``: a server that cannot start is a typed error with its log, not a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

import structgen
from structgen.testing import llama_server


def test_a_file_that_is_no_gguf_fails_fast_with_the_servers_own_words(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    log = tmp_path / "server.log"
    with pytest.raises(structgen.BackendError, match="exited with code") as info, \
            llama_server(bogus, n_threads=1, startup_timeout=60, log_path=log):
        pytest.fail("the server must not come up")
    assert log.is_file() and log.stat().st_size > 0
    assert str(bogus) in str(info.value) or "gguf" in str(info.value).lower()
