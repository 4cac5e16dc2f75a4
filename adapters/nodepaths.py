"""The node's multi-path side (spec/paths.md): racing handshakes, lost carriers, path reports.

``Node`` (node.py) calls these: ``connect_any`` (a handshake to several addresses at once, the
first answer carrying the session and the others becoming its paths), ``path_lost`` (a carrier
is gone: abandon its paths, close a session left with none), ``peer_paths`` (what status shows),
``path_event`` (a path event as an observer event and a log line) and ``apply_pin`` (a peer's
session kept on one carrier: ``Node.pin``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import trio

from p2pos.proto import ErrorCode, PeerId
from p2pos.proto.paths.events import PathAbandoned, PathActive, PathDead, PathValidated
from p2pos.proto.paths.path import PathKind

from . import routeconfig
from .nodetypes import Address, ConnectFailed, Peer

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("p2pos.node")

#: What carries a pinned peer's paths of the pinned carrier: a rank better than any carrier's own (direct
#: UDP's is 0, over IPv6 -1), so the controlling side makes such a path active as soon as it answers
#: (spec/paths.md PTH-4.2).
PIN_RANK = -2
#: What ``Node.pin`` takes: the ``via`` of a path (spec/appapi.md §3).
PIN_VIAS = ("udp", "quic", "turn", "relay")


async def connect_any(
    node: Node,
    peer_id: PeerId,
    addresses: Sequence[object],
    *,
    remote_static: bytes | None = None,
    routes: Sequence[tuple[int, object]] = (),
) -> Peer:
    """The session to ``peer_id``, handshaking at every one of ``addresses`` at once (direct UDP,
    a relay...): the first to answer wins, the other handshakes are dropped and their addresses
    added as paths of the winner (validated, then ranked: spec/paths.md §3-§4).

    ``routes`` are (local, address) pairs tried through that very socket (QUIC to the address
    direct UDP also tries, spec/quic.md §5.1).

    ConnectFailed (the last reason) if none answers; ValueError if no socket takes any address.
    """
    checked: list[tuple[int, Address]] = []
    errors = []
    for address in addresses:
        try:
            local = node._socket_for(address)
            checked.append((local, node.transports[local].check_address(address)))
        except ValueError as exc:
            errors.append(str(exc))
    for local, address in routes:
        try:
            checked.append((local, node.transports[local].check_address(address)))
        except (ValueError, IndexError) as exc:
            errors.append(str(exc))
    if not checked:
        raise ValueError("; ".join(errors) or "no address")
    while (existing := node._peers.get(peer_id)) is None and (dialing := node._dialing.get(peer_id)) is not None:
        await dialing.wait()
    if existing is not None:
        await trio.lowlevel.checkpoint()
        return existing
    done = node._dialing[peer_id] = trio.Event()
    send, receive = trio.open_memory_channel[Peer | ConnectFailed](len(checked))
    sessions: dict[int, tuple[int, Address]] = {}
    now = trio.current_time()
    try:
        for local, remote in checked:
            session = node.endpoint.connect(
                remote, now, local=local, expected_peer=peer_id, remote_static=remote_static
            )
            sessions[session.local_index] = (local, remote)
            node._connecting[session.local_index] = send
            node.endpoint.updated(session.local_index)
        node._after_input()
        failure: ConnectFailed | None = None
        winner: Peer | None = None
        for _ in sessions:
            result = await receive.receive()
            if isinstance(result, Peer):
                winner = result
                break
            failure = result
    finally:
        for session_id in sessions:
            node._connecting.pop(session_id, None)
        del node._dialing[peer_id]
        done.set()
    if winner is None:
        raise failure or ConnectFailed(ErrorCode.INTERNAL_ERROR, "no handshake")
    now = trio.current_time()
    node._peers[peer_id] = winner
    for session_id, (local, remote) in sessions.items():
        if session_id == winner.session_id:
            continue
        connection = node.endpoint.connection(session_id)
        if connection is not None:  # still handshaking, or made a second session: one is enough
            connection.close(now, ErrorCode.NO_ERROR, "another path answered first")
            node.endpoint.updated(session_id)
        transport = node.transports[local]
        kind, rank = routeconfig.kind_and_rank(transport)
        node.endpoint.add_path(winner.session_id, remote, local, now, kind=kind, rank=rank)
    node._updated(winner.session_id)
    return winner


def path_lost(node: Node, local: int, address: Address | None, reason: str) -> int:
    """The carrier behind socket ``local`` lost ``address`` (None: every address; port 0: every
    port of that IP): abandon those paths, each session moving to its next path
    (spec/paths.md §5); a session left with no path is closed with ``reason``.  Returns how
    many sessions it touched.
    """
    now = trio.current_time()
    endpoint = node.endpoint
    touched = 0
    for session in endpoint.sessions():
        session_id = session.local_index
        connection = endpoint.connection(session_id)
        if connection is None:
            continue
        live = [p for p in endpoint.paths(session_id) if p["state"] != "abandoned"]
        if not live:  # still handshaking: the route is all there is
            live = [{"address": endpoint.address_of(session_id), "local": endpoint.socket_of(session_id)}]
        lost = [p for p in live if p["local"] == local and _covers(address, p["address"])]
        if not lost:
            continue
        touched += 1
        if len(lost) == len(live):
            connection.close(now, ErrorCode.INTERNAL_ERROR, f"carrier lost: {reason}"[:200])
        else:
            for path in lost:
                endpoint.abandon_path(session_id, cast("Address", path["address"]), local, now)
        endpoint.updated(session_id)
    if touched:
        log.info("%s carrier lost (%s): %d session(s) affected", node.via(local), reason, touched)
        node._after_input()
    return touched


def addresses_in_use(node: Node, local: int) -> set[Address]:
    """The remote addresses of every session's paths through socket ``local`` that are not abandoned
    (of a session still handshaking: its route)."""
    endpoint = node.endpoint
    used: set[Address] = set()
    for session in endpoint.sessions():
        session_id = session.local_index
        live = [p for p in endpoint.paths(session_id) if p["state"] != "abandoned"]
        if not live:  # still handshaking: the route is all there is
            live = [{"address": endpoint.address_of(session_id), "local": endpoint.socket_of(session_id)}]
        ours = [p["address"] for p in live if p["local"] == local]
        used.update(cast(Address, address) for address in ours if isinstance(address, tuple))
    return used


def peer_paths(node: Node, session_id: int) -> list[dict[str, object]]:
    """Session ``session_id``'s paths as status shows them (spec/appapi.md §3)."""
    from .node import _show

    out: list[dict[str, object]] = []
    for info in node.endpoint.paths(session_id):
        srtt = info.get("srtt")
        out.append(
            {
                "path_id": info["path_id"],
                "via": node.via(info["local"]),
                "kind": info["kind"],
                "rank": info["rank"],
                "address": _show(info["address"]),
                "state": info["state"],
                "active": info["active"],
                "why": info["why"],
                "srtt_ms": round(float(srtt) * 1000, 3) if isinstance(srtt, float | int) else None,
                "cwnd": info["cwnd"],
                "bytes_in_flight": info["bytes_in_flight"],
                "bytes_sent": info["bytes_sent"],
                "bytes_received": info["bytes_received"],
            }
        )
    return out


def path_event(node: Node, event: PathValidated | PathActive | PathDead | PathAbandoned) -> None:
    """A path event as an observer event (spec/appapi.md §5 ``path_*``) and a log line."""
    from .node import _show

    peer = node._by_session.get(event.session_id)
    who = str(peer.peer_id) if peer is not None else f"session {event.session_id}"
    fields: dict[str, object] = {
        "peer_id": who,
        "path_id": event.path_id,
        "via": node.via(event.local),
        "address": _show(event.address),
    }
    if isinstance(event, PathActive):
        fields.update(old_path_id=event.old_path_id, reason=event.reason)
        log.info(
            "peer %s: path %d (%s %s) active: %s",
            who,
            event.path_id,
            fields["via"],
            fields["address"],
            event.reason,
        )
        node._notify("path_active", **fields)
        if peer is not None and peer.peer_id in node.pins:
            apply_pin(node, peer.peer_id)
        return
    if peer is not None and peer.peer_id in node.pins:
        apply_pin(node, peer.peer_id)
    name = {PathValidated: "path_validated", PathDead: "path_dead", PathAbandoned: "path_abandoned"}[type(event)]
    level = logging.DEBUG if isinstance(event, PathValidated) else logging.INFO
    log.log(level, "peer %s: path %d (%s %s) %s", who, event.path_id, fields["via"], fields["address"], name[5:])
    node._notify(name, **fields)


def _covers(lost: Address | None, address: object) -> bool:
    """Whether a carrier's lost ``lost`` address (None: all; port 0: every port of the IP) is ``address``."""
    if lost is None:
        return True
    if lost[1] == 0:
        return isinstance(address, tuple) and len(address) == 2 and address[0] == lost[0]
    return address == lost


def apply_pin(node: Node, peer_id: PeerId) -> None:
    """Give ``peer_id``'s paths the ranks its pin asks (``node.pins``): ``PIN_RANK`` for the pinned
    carrier's, each carrier's own for the others; then, on the side that controls the session (its
    initiator, spec/paths.md PTH-4.2), check at once a validated path that now ranks better than the
    active one: its answer moves the data there (one round trip).  Idempotent: path events call it
    again, so a pinned path that appears, dies and comes back is made active again."""
    peer = node.peer(peer_id)
    connection = node.endpoint.connection(peer.session_id) if peer is not None else None
    if peer is None or connection is None:
        return
    pinned = node.pins.get(peer_id)
    now = trio.current_time()
    infos = node.endpoint.paths(peer.session_id)
    for info in infos:
        local = info["local"]
        transport = node.transports[local] if isinstance(local, int) and 0 <= local < len(node.transports) else None
        rank = routeconfig.kind_and_rank(transport)[1] if transport is not None else 0
        if pinned is not None and node.via(local) == pinned:
            rank = PIN_RANK
        if info["rank"] != rank:
            connection.describe_path(int(cast(int, info["path_id"])), PathKind(str(info["kind"])), rank)
            info["rank"] = rank
    active = next((info for info in infos if info["active"]), None)
    if active is None or not connection.session.initiator:
        return
    for info in infos:
        path = connection.paths.get(int(cast(int, info["path_id"])))
        better = cast(int, info["rank"]) < cast(int, active["rank"])
        if path is not None and better and path.usable and path.validation_deadline is None:
            path.start_validation(now)  # its answer makes it active (PTH-4.2), as a standby check would
    node.endpoint.updated(peer.session_id)  # (called from the node's event dispatch: no _after_input here)
    node._transmit.set()
