"""What a bot does with chat and custom data: log it, count it, send it, answer it.

:class:`Chat` is the bot's handler of ``on_message_received`` / ``on_user_data_received`` and
its API for sending (:meth:`Chat.send_message`, :meth:`Chat.send_user_data`), which the bot's
config (``receive.reply``) and a scenario engine use alike. Recipients may be named by client
id or by participant name (as the room lists them now); none means the whole room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from bot.proto import ErrorCode, data_size
from bot.rtc import EnxRtc, RoomError

from ..config import ReceiveConfig
from ..ops.observe import BotObserver

Json = dict[str, Any]

LOGGED_CHARS = 200
"""Received text is cut here in the log (``receive.log_messages: false``: not logged at all)."""


def _text(message: object) -> str:
    if isinstance(message, str):
        return message
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(message)


class Chat:
    """One bot's chat and data (see the module). ``rtc`` and ``log`` are read when used: the
    bot's EnxRtc exists from joining on, and its logger gains ``room``/``client_id`` then."""

    def __init__(
        self,
        bot: str,
        cfg: ReceiveConfig,
        *,
        log: Callable[[], Any],
        events: BotObserver,
        rtc: Callable[[], EnxRtc | None],
    ) -> None:
        self.bot = bot
        self.cfg = cfg
        self._log = log
        self._events = events
        self._rtc = rtc
        self.replies = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ receiving

    def message_received(self, payload: Json) -> None:
        self._received("message_received", "chat", payload)
        self._maybe_reply(payload)

    def user_data_received(self, payload: Json) -> None:
        self._received("user_data_received", "user_data", payload)

    def _received(self, event: str, kind: str, payload: Json) -> None:
        message = payload.get("message")
        try:
            size = data_size(message)
        except (TypeError, ValueError):
            size = 0
        sender, sender_id = payload.get("sender"), payload.get("senderId")
        fields: Json = {
            "user": sender,
            "user_id": sender_id,
            "sender": sender,
            "sender_id": sender_id,
            "size": size,
            "broadcast": payload.get("broadcast"),
        }
        if self.cfg.log_messages:
            text = _text(message)
            fields["text"] = text[:LOGGED_CHARS]
            if len(text) > LOGGED_CHARS:
                fields["truncated"] = True
        self._log().info(event, **fields)
        self._events.data_message(self.bot, "received", kind, size)

    def _maybe_reply(self, payload: Json) -> None:
        reply = self.cfg.reply
        rtc = self._rtc()
        sender_id = payload.get("senderId")
        if reply is None or rtc is None or not isinstance(sender_id, str) or sender_id == rtc.client_id:
            return
        if reply.answer == "broadcast" and not payload.get("broadcast"):
            return
        if self.replies >= reply.max:
            if self.replies == reply.max:
                self._log().warning("reply_limit_reached", max=reply.max)
                self.replies += 1  # warn once
            return
        self.replies += 1
        text = reply.render(str(payload.get("sender") or ""), _text(payload.get("message")))
        task = asyncio.get_running_loop().create_task(self._reply(text, sender_id), name=f"{self.bot}:reply")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, text: str, to: str) -> None:
        with contextlib.suppress(RoomError):  # logged as send_data_failed
            await self.send_message(text, to=[to])

    # ------------------------------------------------------------------ sending

    async def send_message(self, text: str, to: Iterable[str] | str = ()) -> Json:
        """Chat to ``to`` (client ids or names; empty: everyone else). Returns the room's ack;
        RoomError (logged ``send_data_failed``) if it was refused."""
        return await self._send("chat", text, to)

    async def send_user_data(self, data: object, to: Iterable[str] | str = ()) -> Json:
        """Custom data, as :meth:`send_message` (the SDK's 100 kB default limit applies)."""
        return await self._send("user_data", data, to)

    async def _send(self, kind: str, message: object, to: Iterable[str] | str) -> Json:
        rtc = self._rtc()
        recipients = self.resolve(to)
        broadcast = not recipients
        try:
            if rtc is None:
                raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot send {kind}: the bot has not joined")
            if kind == "chat":
                ack = await rtc.send_message(message, broadcast, recipients)  # type: ignore[arg-type]
            else:
                ack = await rtc.send_user_data(message, broadcast, recipients)
        except RoomError as exc:
            who = self._who(recipients)
            self._log().warning(
                "send_data_failed", type=kind, code=exc.code, error=exc.msg, to=recipients, **who
            )
            raise
        size = data_size(message)
        event = "message_sent" if kind == "chat" else "user_data_sent"
        self._log().info(event, size=size, broadcast=broadcast, to=recipients, **self._who(recipients))
        self._events.data_message(self.bot, "sent", kind, size)
        return ack

    def _who(self, recipients: list[str]) -> Json:
        """``user``/``user_id`` of a message to one participant (log lines about another carry them)."""
        if len(recipients) != 1:
            return {}
        rtc = self._rtc()
        users = [] if rtc is None else rtc.get_user_list()
        name = next((u.get("name") for u in users if u.get("clientId") == recipients[0]), None)
        return {"user": name, "user_id": recipients[0]}

    def resolve(self, to: Iterable[str] | str) -> list[str]:
        """Client ids for ``to``: each entry a client id in the room, else every participant of
        that name; unknown entries are kept as they are (the room refuses them: 4140)."""
        wanted = [to] if isinstance(to, str) else list(to)
        rtc = self._rtc()
        users = [] if rtc is None else rtc.get_user_list()
        ids = {str(u.get("clientId")) for u in users}
        out: dict[str, None] = {}
        for entry in wanted:
            if entry in ids:
                out[entry] = None
                continue
            named = [str(u.get("clientId")) for u in users if u.get("name") == entry]
            for client_id in named or [entry]:
                out[client_id] = None
        return list(out)

    async def aclose(self) -> None:
        """Cancel answers still being sent (the bot is leaving)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
