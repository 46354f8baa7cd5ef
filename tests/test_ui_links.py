"""The links of long lists (`webui.row_links`) are the URLs url_for builds, for every value a row may hold."""

from __future__ import annotations

from flask import url_for

from webui import row_links

VALUES = ["+447700900123", "447700900123", "VODAFONE", "Dr Who & Co", "a/b", "50% off", "über", "短信", "?x=1#y",
          "'quoted' \"both\"", "plus+sign", " ", "~tilde_dot.", 12345]


def test_a_conversation_link_is_what_url_for_builds(app):  # `app`: the real application (tests/conftest.py)
    with app.test_request_context("/ui/inbox"):
        link = row_links("ui.conversation", "number")
        for value in VALUES:
            for query in ({}, {"sim": 3}, {"sim": None}, {"sim": "a b&c"}, {"sim": 1, "page": "2/3"}):
                assert link(value, **query) == url_for("ui.conversation", number=value, **query), (value, query)


def test_a_message_link_is_what_url_for_builds(app):
    with app.test_request_context("/ui/messages"):
        link = row_links("ui.message", "message_id")
        assert [link(number) for number in (1, 42, 10**12)] == [
            url_for("ui.message", message_id=number) for number in (1, 42, 10**12)]
