"""Flashed messages carry where they belong and what the shopper can do instead."""

from __future__ import annotations

from services.page_messages import PageMessages, message_category, parse_message


def test_a_message_keeps_its_level_anchor_and_offer_through_the_flash() -> None:
    category = message_category("error", "line-12", offer_add=39)
    message = parse_message(category, "You already have 60")
    assert (message.level, message.anchor, message.offer_add, message.offer_set) == (
        "error",
        "line-12",
        39,
        None,
    )


def test_plain_categories_of_other_flashes_still_read() -> None:
    message = parse_message("success", "Signed in.")
    assert (message.level, message.anchor) == ("success", None)
    assert parse_message("weird", "x").level == "info"


def test_a_message_shown_beside_its_line_is_not_shown_again_on_top() -> None:
    messages = PageMessages(
        [parse_message("success line-1", "Eggs: 3"), parse_message("success", "Signed in.")]
    )
    assert [m.text for m in messages.beside("line-1")] == ["Eggs: 3"]
    assert messages.beside("line-1") == []
    assert [m.text for m in messages.rest()] == ["Signed in."]
    assert messages.rest() == []
