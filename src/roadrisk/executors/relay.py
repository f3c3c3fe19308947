"""The mailbox actor of the Ray executor: tasks post (started | epoch) messages, the driver drains them.

A module of its own with nothing to import: the actor's worker process loads only this, so a sweep's
Ray executor starts in a fraction of a second instead of importing pandas and scikit-learn for a list.
"""

from __future__ import annotations


class EpochRelay:
    def __init__(self):
        self.messages = []

    def post(self, kind: str, key, payload=None) -> None:
        self.messages.append((kind, key, payload))

    def drain(self) -> list:
        messages, self.messages = self.messages, []
        return messages
