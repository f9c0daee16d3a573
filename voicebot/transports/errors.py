"""The one error every wire codec raises for input it refuses."""

from __future__ import annotations


class ProtocolError(Exception):
    """A peer message we refuse.

    `code` is the short machine-readable reason sent back where the protocol has an
    error message (browser `error` event, Voximplant `customEvent: error`).
    `close_code` set: the connection cannot go on (a WebSocket close code such as
    1003 or 1008); None: the message is dropped and the call goes on. Byte-stream
    protocols (AudioSocket) always close.
    """

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code
