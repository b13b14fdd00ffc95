"""Answers shown growing in WeCom AI bot stream bubbles (reference/wecom-aibot.md §2.6).

A bubble is one WeCom `stream`: the first frame with a new `stream.id` creates it, every frame
carries the WHOLE text so far (it replaces, it does not append), and `finish: true` closes it.
An answer is what the bot writes for one question; it may need several bubbles:

* a bubble holds at most 20480 bytes: a longer answer finishes the bubble and goes on in a new one;
* a bubble must be finished within 10 minutes of its first frame, and dies after 6 minutes
  without a frame: an answer still being written after 9 minutes goes on in a new bubble, and a
  quiet bubble gets its text again every 4 minutes;
* frames are throttled (one every FRAME_INTERVAL per answer), and one answer never has two frames
  on the way (the connection sends the frames of one req_id one after the other).

One pump thread sends the frames of every answer; the worker that has the finished text waits
for the frame on its way, then finishes the bubbles itself, so errors reach the pipeline.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from channel.wecom_bot.ws_client import AibotError, LongConnection, NotConnected, Pending
from common.log import logger

STREAM_MAX_BYTES = 20480
STREAM_SAFE_BYTES = 20000  # room for a decoration added to the final text
STREAM_MAX_AGE = 540.0
STREAM_KEEPALIVE = 240.0
FRAME_INTERVAL = 0.5
RETRY_AFTER = 2.0
EXPIRED = 846608  # the bubble outlived its time: a new one is needed
INVALID_REQ_ID = 846605  # the message cannot be answered on this req_id (any more)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def cut_at(text: str, max_bytes: int) -> int:
    """How many characters of `text` fit in `max_bytes` UTF-8 bytes, cut after a line break
    when one is in the last quarter (a bubble then ends where a paragraph does)."""
    if utf8_len(text) <= max_bytes:
        return len(text)
    fit = len(text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore"))
    newline = text.rfind("\n", 0, fit)
    return newline + 1 if newline >= fit * 3 // 4 else fit


def pieces(text: str, max_bytes: int = STREAM_SAFE_BYTES) -> list[str]:
    """`text` in pieces of at most max_bytes UTF-8 bytes (never an empty list)."""
    out = []
    while utf8_len(text) > max_bytes:
        n = cut_at(text, max_bytes)
        out.append(text[:n])
        text = text[n:]
    out.append(text)
    return out


@dataclass
class Bubble:
    stream_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = 0.0
    last_sent: float = 0.0
    shown: str = ""  # the text WeCom acknowledged
    finishing: bool = False  # that frame closes the bubble (the answer went on in a new one)
    not_before: float = 0.0


@dataclass
class Answer:
    req_id: str
    owner: Any  # the context
    text: str = ""  # everything the bot wrote so far
    offset: int = 0  # characters of `text` in bubbles already finished
    bubble: Bubble = field(default_factory=Bubble)
    # A frame of the answer is on its way: the next one waits for its ack, even when it is the
    # frame that closed the last bubble (a lost closing frame takes its text back, see _sent).
    sending: bool = False
    done: bool = False  # the worker took it over (finishing it, or the handling ended)
    failed: bool = False  # cannot be shown on this req_id: the text goes as a message instead


class StreamPump:
    def __init__(self, conn: LongConnection) -> None:
        self.conn = conn
        self._lock = threading.Condition()
        self._answers: dict[tuple[int, str], Answer] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="wecom-bot-streams", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    # ------------------------------------------------------------------ from the bot
    def show(self, context: Any, req_id: str, answer_id: str, text: str) -> None:
        key = (id(context), answer_id)
        with self._lock:
            answer = self._answers.get(key)
            if answer is None:
                answer = self._answers[key] = Answer(req_id, context)
            if answer.done or answer.failed:
                return
            answer.text = text
            self._lock.notify_all()

    def oldest(self, context: Any) -> Answer | None:
        """The oldest answer of `context` still open (the next finished text is its end)."""
        with self._lock:
            for answer in self._answers.values():
                if answer.owner is context and not answer.done:
                    return answer
        return None

    def open_answers(self, context: Any) -> list[Answer]:
        with self._lock:
            return [a for a in self._answers.values() if a.owner is context and not a.done]

    def take(self, answer: Answer, timeout: float) -> None:
        """Stop the pump touching `answer` and wait for its frame on the way, if any."""
        deadline = time.monotonic() + timeout
        with self._lock:
            answer.done = True
            while answer.sending and time.monotonic() < deadline:
                self._lock.wait(max(0.01, deadline - time.monotonic()))

    def forget(self, context: Any) -> None:
        with self._lock:
            for key in [k for k, a in self._answers.items() if a.owner is context]:
                del self._answers[key]

    # ------------------------------------------------------------------ finishing (worker thread)
    def finish(self, answer: Answer, final_text: str) -> bool:
        """Show `final_text` as the end of `answer`, closing its bubbles. False when the answer
        cannot be shown on its req_id (the caller sends the text as a message)."""
        self.take(answer, self.conn.ack_timeout * 2)
        if answer.failed:
            return False
        # The final text may carry a decoration before what was shown (a group's "@name"):
        # the bubbles already finished hold the start of the bot's text, found again here.
        rest = final_text
        if answer.offset:
            anchor = answer.text[:answer.offset]
            at = final_text.find(anchor[:200])
            rest = final_text[at + answer.offset:] if at >= 0 else final_text[answer.offset:]
        if not rest.strip():  # all of it is in bubbles finished already
            if answer.bubble.shown:
                self._frame_now(answer, answer.bubble, answer.bubble.shown, finish=True)
            return True
        chunks = pieces(rest)
        bubble = answer.bubble
        for n, chunk in enumerate(chunks):
            if n:
                bubble = Bubble()
            try:
                self._frame_now(answer, bubble, chunk, finish=True)
            except AibotError as e:
                if e.errcode == EXPIRED:
                    self._frame_now(answer, Bubble(), chunk, finish=True)
                elif e.errcode == INVALID_REQ_ID and n == 0 and not bubble.shown:
                    return False
                else:
                    raise
        return True

    def _frame_now(self, answer: Answer, bubble: Bubble, text: str, finish: bool) -> None:
        self.conn.request("aibot_respond_msg", stream_body(bubble.stream_id, text, finish), answer.req_id)
        bubble.shown = text

    def close(self, answer: Answer) -> None:
        """The handling ended without a final text for `answer`: close its bubble with what
        it shows (an empty last frame would blank it)."""
        self.take(answer, self.conn.ack_timeout * 2)
        if answer.failed or not answer.bubble.shown:
            return
        try:
            self._frame_now(answer, answer.bubble, answer.bubble.shown, finish=True)
        except AibotError as e:
            logger.warning(f"[wecom_bot] an answer's bubble could not be closed: {e}")

    # ------------------------------------------------------------------ the pump
    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                due, wake = [], None
                for answer in self._answers.values():
                    if answer.done or answer.failed or answer.sending:
                        continue
                    at = self._next_frame(answer, now)
                    if at is None:
                        continue
                    if at <= now:
                        due.append(answer)
                    else:
                        wake = at if wake is None else min(wake, at)
                frames = [self._prepare(answer, now) for answer in due]
                if not frames:
                    self._lock.wait(None if wake is None else max(0.01, wake - now))
                    continue
            for answer, bubble, text, finish in frames:
                self.conn.send("aibot_respond_msg", stream_body(bubble.stream_id, text, finish), answer.req_id,
                               on_done=lambda p, a=answer, b=bubble, t=text: self._sent(a, b, t, p))

    def _next_frame(self, answer: Answer, now: float) -> float | None:
        """When the answer's next frame is due (None: nothing to send)."""
        bubble = answer.bubble
        wanted = answer.text[answer.offset:]
        if not wanted.strip():
            return None
        if wanted != bubble.shown or (bubble.started and now - bubble.started > STREAM_MAX_AGE):
            return max(bubble.last_sent + FRAME_INTERVAL, bubble.not_before)
        return max(bubble.last_sent + STREAM_KEEPALIVE, bubble.not_before)

    def _prepare(self, answer: Answer, now: float) -> tuple[Answer, Bubble, str, bool]:
        """The frame to send for a due answer (under the lock). A bubble that would pass its
        size or age limit is finished with what fits, and the rest goes on in a new bubble."""
        bubble = answer.bubble
        wanted = answer.text[answer.offset:]
        finish = False
        if utf8_len(wanted) > STREAM_SAFE_BYTES:
            wanted, finish = wanted[:cut_at(wanted, STREAM_SAFE_BYTES)], True
        elif bubble.started and now - bubble.started > STREAM_MAX_AGE:
            finish = True
        if finish:
            answer.offset += len(wanted)
            answer.bubble = Bubble()  # the next frame opens a new bubble
            bubble.finishing = True
        answer.sending = True
        bubble.last_sent = now
        bubble.started = bubble.started or now
        return answer, bubble, wanted, finish

    def _sent(self, answer: Answer, bubble: Bubble, text: str, pending: Pending) -> None:
        with self._lock:
            answer.sending = False
            error = pending.error
            retry = error is not None and (isinstance(error, NotConnected) or error.errcode in (-2, -1, 6000))
            if error is None:
                bubble.shown = text
            elif bubble.finishing and not answer.bubble.started and (retry or error.errcode == EXPIRED):
                # The frame that closed the bubble did not land: its text is taken back, to go
                # again in this bubble, or in a new one when WeCom closed this one itself. (A
                # refusal that no retry mends fails the answer, below.)
                answer.offset -= len(text)
                bubble.finishing = False
                if error.errcode != EXPIRED:
                    answer.bubble = bubble
                    bubble.not_before = time.monotonic() + RETRY_AFTER
            elif error.errcode == EXPIRED and answer.bubble is bubble:
                answer.bubble = Bubble()  # WeCom closed it: what is written goes on in a new one
            elif retry:
                bubble.not_before = time.monotonic() + RETRY_AFTER  # the socket is being mended
            else:
                logger.warning(f"[wecom_bot] a growing answer cannot be shown ({error}); it is sent when finished")
                answer.failed = True
            self._lock.notify_all()


def stream_body(stream_id: str, text: str, finish: bool) -> dict:
    return {"msgtype": "stream", "stream": {"id": stream_id, "finish": finish, "content": text}}
