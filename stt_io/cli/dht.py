"""``stt node`` (a long-running DHT member) and ``stt dht put|get|find|providers``.

``stt node`` joins the network through ``--bootstrap HOST:PORT/NODE_ID``
(repeatable; none for the first node), serves the DHT and the listener's
echo/file service on the same socket, prints a status line every
``--status-interval`` seconds, and with ``--state-file`` saves its routing table
on exit and rejoins from it next time. With ``--store DIR`` it also serves the
content of that content store (what ``stt publish`` and ``stt fetch`` keep
there: see :mod:`.content`) and announces itself as its provider.

``stt dht ...`` runs a short-lived member: it joins through ``--bootstrap``,
does one operation, prints the result and exits (status 1 when nothing was found).
"""

from __future__ import annotations

import argparse
import sys

from . import args as cli_args
from .args import CommandError
from .backends import Backend
from .listen import check_save_dir, serve_session

__all__ = ["add_parsers", "bootstrap_entry"]


def bootstrap_entry(text: str) -> tuple[tuple[str, int], bytes]:
    """``HOST:PORT/NODE_ID``."""
    address, sep, node = text.rpartition("/")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT/NODE_ID, got {text!r}")
    return cli_args.peer_address(address), cli_args.node_id(node)


def dht_key(text: str) -> bytes:
    """A key: 64 hex characters."""
    try:
        return cli_args.node_id(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"a key must be 64 hex characters (got {len(text)})") from None


def _common(parser: argparse.ArgumentParser, *, bootstrap_required: bool) -> None:
    cli_args.seed_options(parser)
    cli_args.identity_option(parser)
    parser.add_argument("--bootstrap", type=bootstrap_entry, action="append",
                        default=[], metavar="HOST:PORT/NODE_ID",
                        required=bootstrap_required,
                        help="a member to join through; repeat for more"
                             + (" (required)" if bootstrap_required else
                                " (default: none, the first node of a network)"))
    parser.add_argument("--timeout", type=cli_args.seconds, default=30.0, metavar="SECONDS",
                        help="longest wait for the bootstrap and for each operation")
    cli_args.backend_option(parser)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    node = sub.add_parser("node", help="run a DHT member that also echoes streams and "
                                       "receives files",
                          description="Run a long-lived DHT member.")
    _common(node, bootstrap_required=False)
    node.add_argument("--host", default="127.0.0.1", help="address to bind")
    node.add_argument("--port", type=cli_args.listen_port, default=9337,
                      help="UDP port to bind; 0 picks a free one")
    node.add_argument("--state-file", metavar="FILE",
                      help="save the routing table here on exit and rejoin from it "
                           "(default: none)")
    node.add_argument("--status-interval", type=cli_args.seconds, default=60.0,
                      metavar="SECONDS", help="seconds between two status lines")
    node.add_argument("--save-dir", metavar="DIR",
                      help="existing directory where files sent to the node go "
                           "(default: files are verified and not kept)")
    from .content import store_option  # content imports this module
    store_option(node, optional_value=True)
    node.set_defaults(command=node_command)

    dht = sub.add_parser("dht", help="one DHT operation: put, get, find or providers",
                         description="Join the DHT, do one operation, print the result.")
    ops = dht.add_subparsers(dest="dht_command", required=True, metavar="OPERATION")
    put = ops.add_parser("put", help="store a value; prints its key")
    put.add_argument("value", help="the value (text; use --file for bytes from a file)",
                     nargs="?")
    put.add_argument("--file", metavar="FILE", help="store this file's bytes instead")
    get = ops.add_parser("get", help="print the value stored under KEY")
    get.add_argument("key", type=dht_key, metavar="KEY", help="64 hex digits")
    find = ops.add_parser("find", help="find the member NODE_ID and print its address")
    find.add_argument("peer", type=cli_args.node_id, metavar="NODE_ID", help="64 hex digits")
    providers = ops.add_parser("providers", help="print the providers of KEY")
    providers.add_argument("key", type=dht_key, metavar="KEY", help="64 hex digits")
    providers.add_argument("--provide", action="store_true",
                           help="announce this (short-lived) member as a provider first")
    for parser in (put, get, find, providers):
        _common(parser, bootstrap_required=True)
        parser.set_defaults(command=dht_command)


async def _join(dht, args: argparse.Namespace, io: Backend) -> int:
    from ..errors import BootstrapError
    try:
        return await dht.bootstrap(args.bootstrap, timeout=args.timeout)
    except BootstrapError as exc:
        raise CommandError(f"--bootstrap: {exc}") from None


async def node_command(args: argparse.Namespace, io: Backend) -> int:
    save_dir = check_save_dir(args.save_dir) if args.save_dir is not None else None
    seed = cli_args.network_seed(args)
    identity = cli_args.identity(args.identity)
    if identity is None:
        from stt_proto.identity import Identity
        identity = Identity.generate()
    dht = io.KademliaDHT(identity=identity, shared_seed=seed, host=args.host, port=args.port,
                         state_file=args.state_file)
    async with dht:
        host, port = dht.node.address
        print(f"node listening on {host}:{port}", flush=True)
        print(f"node id {dht.node_id.hex()}", flush=True)
        print(f"bootstrap string {host}:{port}/{dht.node_id.hex()}", flush=True)

        @dht.node.on_session
        async def handle(session) -> None:
            await serve_session(session, save_dir, log=lambda line: print(line, flush=True))

        content = None
        if args.store is not None:
            from .content import open_content  # content imports this module
            content = open_content(io, dht, args.store)
        if args.bootstrap:
            count = await _join(dht, args, io)
            print(f"joined: {count} contacts", flush=True)
        if content is not None:
            # Started after the bootstrap, so its announcements reach the network.
            await content.start()
            print(f"serving {len(content.published())} contents of the store "
                  f"{args.store}", flush=True)
        while True:
            await io.sleep(args.status_interval)
            stats = dht.statistics()
            line = (f"status: {len(dht.contacts())} contacts, "
                    f"{stats['values_records']} values stored, "
                    f"{stats['requests_answered']} requests answered, "
                    f"{stats['pool_sessions']} sessions")
            if content is not None:
                served = content.statistics()
                line += (f", {len(content.published())} contents provided, "
                         f"{served.get('bytes_served', 0):,} content bytes served")
            print(line, flush=True)


async def dht_command(args: argparse.Namespace, io: Backend) -> int:
    seed = cli_args.network_seed(args)
    identity = cli_args.identity(args.identity)
    if identity is None:
        from stt_proto.identity import Identity
        identity = Identity.generate()
    value = _value(args) if args.dht_command == "put" else b""  # usage errors first
    dht = io.KademliaDHT(identity=identity, shared_seed=seed, host="0.0.0.0", port=0)
    async with dht:
        await io.within(args.timeout, _join(dht, args, io), "answer from --bootstrap")
        op = args.dht_command
        if op == "put":
            key = await io.within(args.timeout, dht.put(value), "store")
            print(key.hex(), flush=True)
            return 0
        if op == "get":
            value = await io.within(args.timeout, dht.get(args.key), "answer")
            if value is None:
                raise CommandError(f"no value under {args.key.hex()}")
            sys.stdout.buffer.write(value + (b"" if value.endswith(b"\n") else b"\n"))
            sys.stdout.flush()
            return 0
        if op == "find":
            peer = await io.within(args.timeout, dht.find_node(args.peer), "answer")
            if peer is None:
                raise CommandError(f"no member {args.peer.hex()} was found")
            print(f"{peer.address[0]}:{peer.address[1]}/{peer.node_id_hex}", flush=True)
            return 0
        if args.provide:
            await io.within(args.timeout, dht.provide(args.key), "store")
        providers = await io.within(args.timeout, dht.find_providers(args.key), "answer")
        if not providers:
            raise CommandError(f"no provider of {args.key.hex()}")
        for peer in providers:
            print(f"{peer.address[0]}:{peer.address[1]}/{peer.node_id_hex}", flush=True)
        return 0


def _value(args: argparse.Namespace) -> bytes:
    if args.file is not None:
        if args.value is not None:
            raise cli_args.UsageError("give a VALUE or --file, not both")
        try:
            with open(args.file, "rb") as file:
                return file.read()
        except OSError as exc:
            raise CommandError(f"--file {args.file}: {exc.strerror or exc}") from None
    if args.value is None:
        raise cli_args.UsageError("give a VALUE or --file")
    return args.value.encode()

