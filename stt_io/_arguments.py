"""Checks of what users pass to ``Node`` and ``Node.connect``, shared by both adapters.

A wrong argument must fail at the call, with a message that says what to pass
instead, and never as whatever the socket layer makes of it: the address
``"127.0.0.1:4000"`` would otherwise be indexed as ``("1", "2")``, resolved as
a host name and end in ``OSError [Errno 22]`` or a timeout; a hex ``peer_id``
in ``TypeError: string argument without an encoding``.

Every check raises ``TypeError`` for the wrong kind of value and
``ValueError`` for the right kind with an unusable value. Messages quote an
address (it is public) but never the bytes of an id or a key: a secret pasted
into the wrong argument must not reach a log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from stt_proto.identity import NODE_ID_BYTES, Identity

__all__ = ["check_bind", "check_handler", "check_identity", "check_peer_address",
           "check_peer_id", "check_seed", "check_timeout"]

#: ``"host:port"`` with a single colon (IPv6 addresses have several).
_HOST_WITH_PORT = re.compile(r"(?P<host>[^:]+):(?P<port>[0-9]+)")
_HEX_ID = re.compile(r"\s*[0-9a-fA-F]{%d}\s*" % (2 * NODE_ID_BYTES))


def _kind(value: object) -> str:
    return type(value).__name__


def _check_port(port: object, *, what: str, lowest: int) -> int:
    # bool is an int; (host, True) is a mistake, not port 1.
    if not isinstance(port, int) or isinstance(port, bool):
        hint = f": use int({port!r})" if isinstance(port, str) and port.isdigit() else ""
        raise TypeError(f"{what} must be an int, got {_kind(port)} {port!r}{hint}")
    if not lowest <= port <= 65535:
        raise ValueError(f"{what} must be in {lowest}..65535, got {port}")
    return port


def _check_host(host: object, *, what: str, fix: str) -> str:
    if not isinstance(host, str):
        hint = ": use .decode()" if isinstance(host, (bytes, bytearray)) else ""
        raise TypeError(f"{what} must be a str (a name or an IP address), "
                        f"got {_kind(host)} {host!r}{hint}")
    match = _HOST_WITH_PORT.fullmatch(host)
    if match is not None:
        raise ValueError(f"{what} must not carry a port, got {host!r}: pass "
                         + fix.format(host=match["host"], port=match["port"]))
    return host


def check_peer_address(peer_addr: object) -> tuple[str, int]:
    """``peer_addr`` as a ``(host, port)`` tuple, or a clear error.

    Args:
        peer_addr: what was passed to ``connect``: a ``(host, port)`` pair
            (a tuple, or a list of two) with a ``str`` host and an ``int``
            port in 1..65535.

    Returns:
        ``(host, port)`` as a tuple.

    Raises:
        TypeError: not a pair (a ``"host:port"`` string, say), or a host that
            is not a ``str``, or a port that is not an ``int``.
        ValueError: a port out of range, an empty host, or a host that carries
            a port of its own.
    """
    if isinstance(peer_addr, str):
        match = _HOST_WITH_PORT.fullmatch(peer_addr.strip())
        hint = (f": pass ({match['host']!r}, {match['port']})" if match is not None
                else "")
        raise TypeError(f"address must be a (host, port) tuple, got str {peer_addr!r}{hint}")
    if not isinstance(peer_addr, (tuple, list)) or len(peer_addr) != 2:
        shown = f"{_kind(peer_addr)} of {len(peer_addr)}" \
            if isinstance(peer_addr, (tuple, list)) else _kind(peer_addr)
        raise TypeError(f"address must be a (host, port) tuple, got {shown} {peer_addr!r}")
    host = _check_host(peer_addr[0], what="the address's host", fix="({host!r}, {port})")
    if not host:
        raise ValueError("the address's host is empty")
    return host, _check_port(peer_addr[1], what="the address's port", lowest=1)


def check_peer_id(peer_id: object) -> bytes:
    """``peer_id`` as 32 bytes, or an error that says how to get them.

    Args:
        peer_id: the peer's node id, raw (``bytes``, ``bytearray`` or
            ``memoryview``).

    Returns:
        The id as ``bytes``.

    Raises:
        TypeError: not bytes-like (a hex ``str`` gets a ``bytes.fromhex`` hint).
        ValueError: not exactly 32 bytes (hex text encoded as bytes gets the
            same hint).
    """
    what = f"peer_id must be {NODE_ID_BYTES} bytes (the peer's node id)"
    if isinstance(peer_id, str):
        hint = "use bytes.fromhex(...)" if _HEX_ID.fullmatch(peer_id) else \
            f"a hex id has {2 * NODE_ID_BYTES} hex digits, this has {len(peer_id)} characters"
        raise TypeError(f"{what}, got str: {hint}")
    if not isinstance(peer_id, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}, got {_kind(peer_id)}")
    raw = bytes(peer_id)
    if len(raw) != NODE_ID_BYTES:
        hint = ""
        if _HEX_ID.fullmatch(raw.decode("latin-1")):
            hint = ": these are hex digits, use bytes.fromhex(peer_id.decode())"
        raise ValueError(f"{what}, got {len(raw)} bytes{hint}")
    return raw


def check_timeout(timeout: object) -> float | None:
    """A connect timeout: a finite number of seconds above 0, or ``None``
    (the node's ``connect_timeout``).

    Raises:
        TypeError: not a number.
        ValueError: zero, negative, NaN or infinite.
    """
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number of seconds, got {_kind(timeout)} {timeout!r}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a finite number of seconds above 0, got {timeout!r}")
    return float(timeout)


def check_bind(host: object, port: object) -> tuple[str, int]:
    """Where a node binds: a ``str`` host (``""`` for every interface) and an
    ``int`` port in 0..65535 (0 picks a free one).

    Raises:
        TypeError: a host that is not a ``str``, a port that is not an ``int``.
        ValueError: a port out of range, or a host that carries a port.
    """
    return (_check_host(host, what="host", fix="host={host!r}, port={port}"),
            _check_port(port, what="port", lowest=0))


def check_identity(identity: object) -> Identity | None:
    """A node's identity: an :class:`~stt_proto.identity.Identity` or ``None``.

    Raises:
        TypeError: anything else; raw key bytes get a hint (never shown).
    """
    if identity is None or isinstance(identity, Identity):
        return identity
    hint = ""
    if isinstance(identity, (bytes, bytearray, memoryview)):
        hint = ": wrap a raw private key with Identity.from_private_bytes(...)"
    elif isinstance(identity, str):
        hint = ": load an identity file with stt_io.keys.load_identity(path)"
    raise TypeError(f"identity must be an Identity, got {_kind(identity)}{hint}")


def check_seed(shared_seed: object) -> None:
    """The network seed must be bytes; text gets a hint (never shown: it is secret).
    Its length is checked by the engine's configuration.

    Raises:
        ValueError: ``None`` (the seed is required, never defaulted).
        TypeError: not bytes-like.
    """
    if shared_seed is None:
        raise ValueError("shared_seed is required: nodes of one network share a secret seed")
    if not isinstance(shared_seed, (bytes, bytearray, memoryview)):
        hint = ": use .encode() or stt_io.keys.load_seed(path)" \
            if isinstance(shared_seed, str) else ""
        raise TypeError(f"shared_seed must be bytes, got {_kind(shared_seed)}{hint}")


def check_handler(handler: object, what: str) -> Callable[..., Any]:
    """A session handler or callback must be callable.

    Raises:
        TypeError: it is not (``on_session(handle())`` passed a coroutine).
    """
    if not callable(handler):
        hint = ": pass the function itself, not the result of calling it" \
            if hasattr(handler, "__await__") else ""
        raise TypeError(f"{what} must be callable, got {_kind(handler)}{hint}")
    return handler
