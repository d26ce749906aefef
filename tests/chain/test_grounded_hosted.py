"""Grounding and thinking on a hosted endpoint (canned replies through the fault proxy): a value that is not in the
source is never returned (it is re-asked), and a reasoning block never becomes the payload."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import structgen
from structgen.testing import Fault, FaultProxy

from ..conftest import completion_body

SOURCE = "Vendor: ACME Tools Ltd.\nInvoice number: INV-7\nTotal: 12.00"
SCHEMA = {"type": "object", "properties": {"vendor": {"type": "string"}, "number": {"type": "string"}},
          "required": ["vendor", "number"]}


@pytest.fixture(scope="module")
def canned() -> Iterator[FaultProxy]:
    """The fault proxy answering every request itself (nothing listens upstream)."""
    with FaultProxy("http://127.0.0.1:9") as proxy:
        yield proxy


def hosted(proxy: FaultProxy) -> structgen.OpenAICompatible:
    return structgen.OpenAICompatible(f"{proxy.url}/v1", timeout=10, max_retries=0)


def test_an_invented_value_is_re_asked_and_the_grounded_one_kept(canned: FaultProxy) -> None:
    canned.reset()
    canned.always(None)
    canned.inject(Fault.status(200, body=completion_body(json.dumps({"vendor": "Globex", "number": "INV-7"}))),
                  Fault.status(200, body=completion_body(json.dumps({"vendor": "ACME  Tools Ltd.", "number": "INV-7"}))))
    model = hosted(canned)
    r = structgen.generate("Extract the invoice.", SCHEMA, model=model, source=SOURCE, strategy="repair")
    assert r.value == {"vendor": "ACME  Tools Ltd.", "number": "INV-7"}   # whitespace may differ on hosted replies
    assert "/vendor" in r.attempts[0].error and "not written in the source" in r.attempts[0].error
    assert SOURCE[slice(*r.spans["/vendor"])] == "ACME Tools Ltd."
    sent = json.loads(canned.log[0].body)["messages"][-1]["content"]
    assert SOURCE in sent
    model.close()


def test_only_invented_values_end_in_a_typed_error(canned: FaultProxy) -> None:
    canned.reset()
    canned.always(Fault.status(200, body=completion_body(json.dumps({"vendor": "Globex", "number": "1"}))))
    model = hosted(canned)
    with pytest.raises(structgen.ValidationFailed):
        structgen.generate("Extract the invoice.", SCHEMA, model=model, source=SOURCE, strategy="repair",
                           max_attempts=2)
    model.close()


def test_a_think_block_is_reasoning_not_payload(canned: FaultProxy) -> None:
    canned.reset()
    reply = ('<think>The vendor could be {"vendor": "Globex", "number": "0"}, no.</think>\n'
             '{"vendor": "ACME Tools Ltd.", "number": "INV-7"}')
    canned.always(Fault.status(200, body=completion_body(reply)))
    model = hosted(canned)
    r = structgen.generate("Extract the invoice.", SCHEMA, model=model, strategy="prompt", think=64)
    assert r.value == {"vendor": "ACME Tools Ltd.", "number": "INV-7"}
    assert r.reasoning is not None and r.reasoning.startswith("The vendor could be")
    model.close()
