"""The README stays true: every Flutter name we map, every log event and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from bot.proto.names import FLUTTER_CALLBACKS, FLUTTER_METHODS
from bot.rtc import EnxRtc

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_mapping_table_covers_every_flutter_name() -> None:
    for flutter, (python, _) in FLUTTER_CALLBACKS.items():
        assert f"`{flutter}`" in README or flutter in README, flutter
        assert python in README, python
        assert hasattr(EnxRtc(), python), python
    for flutter, python in FLUTTER_METHODS.items():
        assert flutter in README, flutter
        assert python in README, python
        assert callable(getattr(EnxRtc, python)), python


def test_the_two_commands_come_first() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block and "make run" in first_block.group(1) and "make test" in first_block.group(1)


def test_log_events_are_documented() -> None:
    for event in (
        "room_connected",
        "room_error",
        "room_disconnected",
        "user_connected",
        "user_disconnected",
        "published_stream",
        "unpublished_stream",
    ):
        assert f"`{event}`" in README, event
