"""Path validation: a session follows its peer to a new address only once the
peer proves it receives there.

Theory of operation
-------------------
A peer's address changes under a live session: a NAT rebinds its mapping, a
laptop moves from Wi-Fi to LTE, a process rebinds its socket. The session
survives it because packets are routed by the receiver index in their header,
not by address; but *where we send* must follow, and must not follow anybody
who merely claims to be there. An attacker on the path can copy a genuine
packet and race it from another source address; if the first authenticated
packet from a new address moved the session, that copy would redirect all of
our traffic (and make us flood whoever owns the forged address).

So an authenticated packet from an address other than the session's starts a
*probe* of that address (``docs/protocol.md`` 7.11, after RFC 9000 section
8.2): a packet holding PATH_CHALLENGE with 8 fresh random bytes goes to the
new address, and the session moves there when a PATH_RESPONSE echoing them
arrives (from any address: only the holder of the session's keys can write
one, and only the one who received the challenge knows the bytes). Until then:

* the current (validated) address stays usable, and it gets the session's
  packets unless the peer's newest packet (by packet number) came from the new
  address: then they go to the new one as well, as far as the next rule lets
  them, so that a peer that really moved gets its ACKs within a round trip;
* the new address gets no more bytes than it sent us (anti-amplification,
  counted per probe), so a forged source cannot be flooded: what does not fit
  goes to the current address;
* a challenge unanswered for ``3 x`` the smoothed RTT (at least
  :data:`MIN_PROBE_INTERVAL`) is sent again with new bytes, at most
  :data:`MAX_PROBE_ATTEMPTS` times; then the probe is abandoned
  (``path_validations_failed``).

Once the session moves, what was in flight goes again at once (it went to the
old address). A move to another host (IP address) also restarts the congestion
controller and the RTT estimator from their initial state (RFC 9000 section
9.4): nothing measured on the old path says what the new one carries or how
long it takes. A move to another port of the same host is the usual NAT
rebinding, on the same path, and keeps them (:func:`new_host`).

One probe runs per session: a packet from yet another address replaces it (the
latest claim is the one worth checking). A replayed packet never gets here (the
replay window drops it before it is opened), and a forged one fails
authentication. Packets from the current address never start a probe, so a
peer that moves back is followed at once by a probe that its current traffic
answers.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["PathProbe", "MAX_PROBE_ATTEMPTS", "MIN_PROBE_INTERVAL", "CHALLENGE_SIZE",
           "new_host"]

Address = Any

#: PATH_CHALLENGE transmissions of one probe before it is abandoned.
MAX_PROBE_ATTEMPTS = 3
#: Least time between two challenges of one probe, whatever the RTT (seconds).
MIN_PROBE_INTERVAL = 0.01
#: Bytes of a PATH_CHALLENGE's data.
CHALLENGE_SIZE = 8


def new_host(old: Address, new: Address) -> bool:
    """Whether a move from ``old`` to ``new`` reaches another host, not just
    another port of the same one (a NAT rebinding): then the path's congestion
    and RTT estimates no longer hold (RFC 9000 section 9.4)."""
    if isinstance(old, tuple) and isinstance(new, tuple):
        return old[0] != new[0]
    return old != new


class PathProbe:
    """The validation of one new address of a session's peer (see the module docstring).

    Attributes:
        address: the address being validated.
        received: bytes of authenticated packets that came from it.
        sent: bytes we sent to it (never more than ``received``).
        attempts: challenges sent so far.
        next_at: when the next challenge is due (``None``: send one as soon as
            the budget allows).
    """

    __slots__ = ("address", "received", "sent", "attempts", "next_at", "challenges", "current")

    def __init__(self, address: Address) -> None:
        self.address = address
        #: Whether the peer's newest packet came from this address.
        self.current = False
        self.received = 0
        self.sent = 0
        self.attempts = 0
        self.next_at: float | None = None
        self.challenges: list[bytes] = []

    def due(self, now: float) -> bool:
        """Whether a challenge should go out now (budget aside)."""
        return self.attempts < MAX_PROBE_ATTEMPTS and (self.next_at is None or now >= self.next_at)

    def exhausted(self, now: float) -> bool:
        """Every challenge sent and the last one unanswered for its interval."""
        return self.attempts >= MAX_PROBE_ATTEMPTS and self.next_at is not None \
            and now >= self.next_at

    def may_send(self, size: int) -> bool:
        """Whether ``size`` more bytes keep us within what the address sent us."""
        return self.sent + size <= self.received

    def challenge(self, rng: Callable[[int], bytes], interval: float, now: float) -> bytes:
        """New random bytes for the next challenge; the probe waits ``interval``
        (at least :data:`MIN_PROBE_INTERVAL`) for its answer."""
        data = rng(CHALLENGE_SIZE)
        self.challenges.append(data)
        self.attempts += 1
        self.next_at = now + max(interval, MIN_PROBE_INTERVAL)
        return data

    def answered_by(self, data: bytes) -> bool:
        return data in self.challenges

    def __repr__(self) -> str:
        return (f"<PathProbe {self.address!r} attempts={self.attempts} "
                f"received={self.received} sent={self.sent}>")
