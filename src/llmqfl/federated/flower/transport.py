"""Server-side messaging over a Flower ``Grid``: find the clients, exchange one kind of message per round.

A round's messages are pushed together and their replies pulled until all arrived, the round's
timeout passed, or a destination node left the federation. A client whose reply is an error or
never came is reported as failed with the reason; the caller decides what a round without it means.
Bytes on the wire are counted per (round, client) in both directions.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from llmqfl.federated.flower import messages

log = logging.getLogger(__name__)


class FlowerTransportError(RuntimeError):
    """The federation cannot go on over Flower (clients missing, too few replies)."""


@dataclass(frozen=True)
class Identity:
    """What a client tells the server about itself: no items, only counts and its LLM's loss."""

    client: int
    n_train: int
    llm_loss: float


class GridTransport:
    def __init__(
        self,
        grid: Grid,
        *,
        round_timeout_s: float,
        connect_timeout_s: float,
        poll_s: float = 0.05,
        progress: Path | None = None,
    ) -> None:
        self.grid = grid
        self.round_timeout_s = float(round_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.poll_s = float(poll_s)
        self.progress = progress
        self.nodes: dict[int, int] = {}  # client id -> Flower node id
        self.strangers: set[int] = set()  # nodes that did not identify as a client that may rejoin
        self.bytes_down: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # round -> client -> bytes
        self.bytes_up: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def note(self, text: str) -> None:
        """One progress line (the launcher and tests follow the run by it)."""
        log.info(text)
        if self.progress is not None:
            with self.progress.open("a") as handle:
                handle.write(text + "\n")

    def connect(self, expected: Iterable[int]) -> dict[int, Identity]:
        """Wait for every expected client's node, ask each who it is; client id -> identity."""
        expected = set(expected)
        deadline = time.monotonic() + self.connect_timeout_s
        node_ids: list[int] = []
        while time.monotonic() < deadline:
            node_ids = list(self.grid.get_node_ids())
            if len(node_ids) >= len(expected):
                break
            time.sleep(0.2)
        found: dict[int, Identity] = {}
        remaining = max(deadline - time.monotonic(), 5.0)
        queries = [self._message(RecordDict(), node, messages.QUERY, 0) for node in node_ids]
        for reply in self.grid.send_and_receive(queries, timeout=remaining):
            if reply.has_error():
                log.warning("node %s did not identify itself: %s", reply.metadata.src_node_id, reply.error.reason)
                continue
            m = reply.content.metric_records["identity"]
            identity = Identity(int(m["client"]), int(m["n_train"]), float(m["llm_loss"]))
            if identity.client in found:
                raise FlowerTransportError(f"two SuperNodes claim client {identity.client}")
            found[identity.client] = identity
            self.nodes[identity.client] = reply.metadata.src_node_id
        missing, unknown = sorted(expected - set(found)), sorted(set(found) - expected)
        if missing or unknown:
            raise FlowerTransportError(
                f"flower: clients {missing} did not connect within {self.connect_timeout_s:.0f} s"
                + (f"; unknown clients {unknown}" if unknown else "")
            )
        self.note(f"connected clients {sorted(found)}")
        return found

    def rejoin(self, round_index: int, candidates: Iterable[int]) -> list[int]:
        """Clients among ``candidates`` (sites that missed a round) whose restarted SuperNode is back.

        A node the server has not met is asked who it is; if it names a candidate, that client's
        messages go to the new node from now on. A node that names anyone else, or does not answer,
        is not asked again. The query's bytes are booked on this round."""
        candidates = set(candidates)
        online = set(self.grid.get_node_ids())
        new = sorted(online - set(self.nodes.values()) - self.strangers)
        if not candidates or not new:
            return []
        queries = {node: self._message(RecordDict(), node, messages.QUERY, round_index) for node in new}
        timeout = min(self.connect_timeout_s, self.round_timeout_s)
        back: list[int] = []
        self.strangers.update(new)
        for reply in self.grid.send_and_receive(list(queries.values()), timeout=timeout):
            node = reply.metadata.src_node_id
            if reply.has_error():
                log.warning("node %s did not identify itself: %s", node, reply.error.reason)
                continue
            k = int(reply.content.metric_records["identity"]["client"])
            if k not in candidates or k in back:
                log.warning("node %s claims client %s, which is not waiting to rejoin", node, k)
                continue
            self.strangers.discard(node)
            self.nodes[k] = node
            self.bytes_down[round_index][k] += messages.wire_bytes(queries[node])
            self.bytes_up[round_index][k] += messages.wire_bytes(reply)
            back.append(k)
        if back:
            self.note(f"round {round_index}: clients {sorted(back)} rejoined")
        return sorted(back)

    def _message(self, content: RecordDict, node: int, kind: str, round_index: int) -> Message:
        return Message(content, dst_node_id=node, message_type=kind, group_id=str(round_index))

    def exchange(
        self, round_index: int, kind: str, contents: dict[int, RecordDict]
    ) -> tuple[dict[int, Message], dict[int, str]]:
        """Send ``contents[client]`` to each client; (replies by client, failure reason by client)."""
        online = set(self.grid.get_node_ids())
        failed: dict[int, str] = {k: "node left the federation" for k in contents if self.nodes[k] not in online}
        sent = {k: self._message(c, self.nodes[k], kind, round_index) for k, c in contents.items() if k not in failed}
        for k, message in sent.items():
            self.bytes_down[round_index][k] += messages.wire_bytes(message)
        ids = list(self.grid.push_messages(sent.values())) if sent else []
        client_of = {mid: k for mid, k in zip(ids, sent, strict=True)}
        self.note(f"round {round_index}: {kind} sent to {sorted(sent)}")
        replies: dict[int, Message] = {}
        deadline = time.monotonic() + self.round_timeout_s
        pending = set(ids)
        while pending:
            for reply in self.grid.pull_messages(list(pending)):
                mid = reply.metadata.reply_to_message_id
                k = client_of[mid]
                pending.discard(mid)
                self.bytes_up[round_index][k] += messages.wire_bytes(reply)
                if reply.has_error():
                    failed[k] = f"error {reply.error.code}: {reply.error.reason}"
                else:
                    replies[k] = reply
            if not pending:
                break
            online = set(self.grid.get_node_ids())
            for mid in list(pending):
                if self.nodes[client_of[mid]] not in online:
                    failed[client_of[mid]] = "node left the federation"
                    pending.discard(mid)
            if time.monotonic() > deadline:
                for mid in pending:
                    failed[client_of[mid]] = f"no reply within {self.round_timeout_s:g} s"
                break
            time.sleep(self.poll_s)
        if failed:
            self.note(f"round {round_index}: {kind} failed for {dict(sorted(failed.items()))}")
        return replies, failed
