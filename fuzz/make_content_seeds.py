#!/usr/bin/env python3
"""Write the seed corpus of the content codec harness: ``fuzz/corpus/content_codec``.

Usage: ``python fuzz/make_content_seeds.py``. :func:`genuine_messages` is also
what ``fuzz_content_codec.py`` mutates, so seeds and harness start from the same
valid messages: the vectors of ``docs/content-wire.md`` (one of every type, the
CHUNK with its genuine two-hash proof), every refusal reason, and a CHUNK of the
largest size (a whole chunk and 32 proof hashes), so that edits reach the size
limits. A seed is a target byte and its input: bit 0 clear, the rest is decoded
as it is; set, the rest picks a genuine message and edits it, in the op format
of ``_harness.Ops``. Bit 1 set hands the input to ``decode`` as a
``memoryview`` (the zero-copy path) instead of ``bytes``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stt_proto.content import messages as m  # noqa: E402
from stt_proto.content.tree import CHUNK_SIZE  # noqa: E402

#: The vectors' content: 786,432 zero bytes and "hello" (docs/content-wire.md section 6).
REQUEST_ID = 70000
LENGTH = 786437
CONTENT_ID = bytes.fromhex("5b95f25557cf2b6849b78e0228fb54bfabd6e766a798772ac7901f6f062e5539")
PROOF = (bytes.fromhex("b27a032984ea8a6bec700c3d6f63f8fcfbf8ff8ef87e972891feda4eea4aad0c"),
         bytes.fromhex("ff615919584993d2148b436e1b6da71a464f51954fc755fb9e522839731b4f8d"))

#: Target byte flags.
MUTATE = 1
AS_VIEW = 2


def genuine_messages() -> list[m.ContentMessage]:
    """Valid messages of every type; the index of each is what a mutation seed names."""
    return [
        m.Request(request_id=REQUEST_ID, content_id=CONTENT_ID, index=3),                 # 0
        m.Chunk(request_id=REQUEST_ID, length=LENGTH, index=3, proof=PROOF,
                data=b"hello"),                                                             # 1
        m.Chunk(request_id=0, length=0, index=0, proof=(), data=b""),                     # 2
        *(m.Refuse(request_id=REQUEST_ID, reason=reason, retry_after_ms=1500)
          for reason in m.RefuseReason),                                                    # 3..6
        m.Cancel(request_id=REQUEST_ID),                                                    # 7
        # The largest message: 32 hashes (0x00.., 0x01.., ...) and a whole chunk.
        m.Chunk(request_id=2**32 - 1, length=2**64 - 1, index=2**32 - 1,
                proof=[bytes([i]) * 32 for i in range(m.MAX_PROOF_HASHES)],
                data=bytes(range(256)) * (CHUNK_SIZE // 256)),                              # 8
    ]


def content_codec_seeds() -> dict[str, bytes]:
    genuine = genuine_messages()
    names = ["request", "chunk", "chunk_empty", "refuse_not_found", "refuse_busy",
             "refuse_out_of_range", "refuse_stopping", "cancel"]
    seeds = {name: b"\x00" + msg.encode() for name, msg in zip(names, genuine, strict=False)}
    seeds["view_chunk"] = bytes((AS_VIEW,)) + genuine[1].encode()
    seeds["view_request"] = bytes((AS_VIEW,)) + genuine[0].encode()
    # Mutations: which genuine message, how many edits less one, then each edit
    # as (kind, u16 position, argument): 0 flip (xor byte), 1 cut, 2 insert
    # (count, bytes), 3 overwrite (8 bytes).
    # CHUNK: proof_count is byte 17. 2 -> 1: the second hash reads as data.
    seeds["mutate_chunk_fewer_hashes"] = b"\x01\x01\x00\x00\x00\x11\x03"
    # 2 -> 3: a hash short.
    seeds["mutate_chunk_more_hashes"] = b"\x03\x01\x00\x00\x00\x11\x01"
    seeds["mutate_chunk_cut_in_proof"] = b"\x01\x01\x00\x01\x00\x30"
    # The largest CHUNK with proof_count 31: the 32nd hash joins the data,
    # 32 bytes over CHUNK_SIZE.
    seeds["mutate_full_chunk_proof_31"] = b"\x01\x08\x00\x03\x00\x11\x1f" + bytes(7)
    seeds["mutate_full_chunk_insert"] = b"\x03\x08\x00\x02\x01\x00\x01\x7f"
    seeds["mutate_full_chunk_cut"] = b"\x01\x08\x00\x01\xea\x60"
    # REFUSE: the reason is byte 5; BUSY (2) xor 7 is 5, unassigned.
    seeds["mutate_refuse_reason"] = b"\x01\x04\x00\x00\x00\x05\x07"
    seeds["mutate_request_insert"] = b"\x01\x00\x00\x02\x00\x25\x04\xde\xad\xbe\xef"
    seeds["mutate_cancel_two_edits"] = b"\x03\x07\x01\x00\x00\x00\x05\x01\x00\x03"
    return seeds


def main() -> None:
    folder = HERE / "corpus" / "content_codec"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = content_codec_seeds()
    for seed, data in seeds.items():
        (folder / seed).write_bytes(data)
    print(f"content_codec: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
