"""The node's command line takes an enrolment token in the form the page shows (``--token=…``),
also when the token begins with "-" (``secrets.token_urlsafe`` gives one such token in 64)."""

from __future__ import annotations

import pytest

from compute.node.__main__ import main


def test_a_token_that_begins_with_a_dash_is_taken_in_the_form_the_page_shows(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("USUFRUCT_NODE_SLUG", raising=False)
    with pytest.raises(SystemExit):  # the separated form reads "-abc" as an option, not a value
        main(["enroll", "--token", "-abc"])
    capsys.readouterr()
    # Parsed: it stops further on, at the node configuration this test leaves out.
    assert main(["enroll", "--token=-abc"]) == 2
    assert capsys.readouterr().err.strip() == "error: environment variable USUFRUCT_NODE_SLUG is required"
