#!/usr/bin/env python3
"""Write the seed corpus in fuzz/corpus/<target>/ (checked in; rerun after changing a layout).

Each file is one input of the matching `vekter::fuzzing` entry point; the layouts are described
in src/fuzzing/ (feature `fuzzing`). Files are named after what they hold, so a change shows in `git diff`.
"""

import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def f32s(*xs):
    return struct.pack("<%df" % len(xs), *xs)


def vector_codec():
    texts = {
        "json-basic": "[1.5, 2, 3]",
        "json-spaces": " [ 1 , -2.5e1,3E-1 ,0] ",
        "json-empty": "[]",
        "json-nested": "[1, [2]]",
        "json-string": '[1, "a"]',
        "json-nan": "[NaN]",
        "json-neg-inf": "[-Infinity]",
        "json-f32-overflow": "[1e39]",
        "json-f64-overflow": "[1e999]",
        "json-f32-max": "[3.4028235e38, -3.4028235e38]",
        "json-f32-edge": "[3.4028235677973366e38]",
        "json-underflow": "[1e-46, 5e-324, 1e-400]",
        "json-neg-zero": "[-0.0, -0, 0]",
        "json-trailing-comma": "[1,]",
        "json-leading-zero": "[01]",
        "json-missing-comma": "[1 2]",
        "json-trailing-text": "[1] x",
        "json-object": '{"a": 1}',
        "json-true": "[true]",
        "json-dot": "[1.]",
        "json-exp": "[1e, 2E+]",
        "json-unclosed": "[1",
        "json-long-int": "[123456789012345678901234567890]",
        "json-precision": "[0.1, 0.2, 0.30000000000000004, 2.4000000953674316]",
        "json-whitespace": "\t\r\n[\n1\t]\r\n",
        "empty": "",
    }
    for name, t in texts.items():
        write("vector_codec", name, t)
    blobs = {
        "blob-basic": f32s(1.0, -2.5, 3.25),
        "blob-one": f32s(2.4),
        "blob-neg-zero": f32s(-0.0, 0.0),
        "blob-nan": struct.pack("<I", 0x7FC00000),
        "blob-inf": struct.pack("<I", 0x7F800000) + f32s(1.0),
        "blob-subnormal": struct.pack("<II", 1, 0x807FFFFF),
        "blob-max": f32s(3.4028234663852886e38, -3.4028234663852886e38),
        "blob-5-bytes": b"\x00\x00\x80\x3f\x00",
        "blob-3-bytes": b"[1]",
    }
    for name, b in blobs.items():
        write("vector_codec", name, b)


def json_output():
    def f64(x):
        return b"\x00" + struct.pack("<d", x)

    def f32(x):
        return b"\x01" + struct.pack("<f", x)

    def i64(x):
        return b"\x02" + struct.pack("<q", x)

    def text(s):
        b = s.encode() if isinstance(s, str) else s
        return b"\x03" + bytes([len(b)]) + b

    null = b"\x04"

    def dec(s):
        return b"\x05" + bytes([len(s)]) + s.encode()

    write("json_output", "floats-python-repr", b"".join(f64(x) for x in [
        1.0, 0.25, 30.25, 1e-05, 0.0001, 1.500000053056283e-07, 1e16, 1e15,
        123456789012345680.0, -0.0, 0.0, -2.5, 0.1, 100.0, 5e-324, 1.7976931348623157e308]))
    write("json_output", "floats-nonfinite", f64(float("inf")) + f64(float("-inf")) + f64(float("nan")))
    write("json_output", "f32-list", b"".join(f32(x) for x in [2.4, 0.1, 3.4028234663852886e38, 1e-45, -0.0, 1.0]))
    write("json_output", "f32-nan", f32(float("nan")) + f32(1.5))
    write("json_output", "ids-mixed", i64(1) + text("a") + null + f64(2.5) + i64(-1))
    write("json_output", "ids-int-extremes", i64(-(2 ** 63)) + i64(2 ** 63 - 1) + i64(0))
    write("json_output", "ids-escapes", text('caf\u00e9 "q" \\ \n\t\x01\x7f \U0001F600'))
    write("json_output", "ids-controls", text(bytes(range(0, 32))))
    write("json_output", "ids-invalid-utf8", text(b"\xff\xfe\xc3(") + text(b"\xed\xa0\x80"))
    write("json_output", "decimals", b"".join(dec(s) for s in ["1e-5", "0.1", "-0", "1e400", "9007199254740993", "2.5e-308"]))
    write("json_output", "empty", b"")


def vtab_options():
    cases = {
        "all-options": ["content = docs", ' column="vec"', "id = doc_id", "factory = 'IVF4,Flat'",
                        "metric = cosine", "train_size = 100", "params = 'nprobe=2, rerank=3'", "dim = 8"],
        "brackets-rowid": ["content=[my docs]", "id=rowid"],
        "quoted-quote": ["content='it''s'"],
        "backtick": ["content=`a``b`", "column=\"x\"\"y\""],
        "upper-keys": ["CONTENT = Docs", "METRIC = IP", "Factory = HNSW32"],
        "no-content": ["factory=Flat"],
        "unknown": ["content=t", "colour=red"],
        "twice": ["content=t", "content=u"],
        "bad-metric": ["content=t", "metric=manhattan"],
        "dim-zero": ["content=t", "dim=0"],
        "dim-big": ["content=t", "dim=70000"],
        "dim-max": ["content=t", "dim=65536", "train_size=10000000"],
        "train-big": ["content=t", "train_size=10000001"],
        "train-text": ["content=t", "train_size=x"],
        "train-plus": ["content=t", "train_size=+5"],
        "params-bare": ["content=t", "params='nprobe'"],
        "params-many": ["content=t", "params='nprobe=1,efSearch=1e308,rerank=100,nprobe=3,x_1=0'"],
        "params-negative": ["content=t", "params='nprobe=-1'"],
        "params-rerank-frac": ["content=t", "params='rerank=1.5'"],
        "params-name": ["content=t", "params='a-b=1'"],
        "not-kv": ["content"],
        "empty-value": ["content="],
        "empty-quoted": ["content=''"],
        "factory-long": ["content=t", "factory=" + "Flat," * 70],
        "factory-bad": ["content=t", "factory=HNSW0"],
        "first-params": ["nprobe=3, rerank=2", "content=t"],
        "first-factory": ["IVF16,PQ4x8", "content=t"],
        "unicode": ["content=t\u00e9", "column=\u2603", "params='efSearch\u00e9=1'"],
        "where-llm": ["content=embeddings", "where='collection_id = 1'", "partition=collection_id"],
        "where-rich": ["content=t", "where='(a IS NOT NULL AND b NOT IN (1, -2.5e3, ''x'', X''0a'')) OR c BETWEEN 1 "
                       "AND 2 OR d NOT LIKE ''%a%'' OR \"e f\" GLOB ''*'' '"],
        "where-function": ["content=t", "where='upper(a) = 1'"],
        "where-subquery": ["content=t", "where='a IN (SELECT 1)'"],
        "where-semicolon": ["content=t", "where='a = 1; DROP TABLE t'"],
        "where-deep": ["content=t", "where='" + "(" * 300 + "a" + ")" * 300 + "'"],
        "where-unclosed": ["content=t", "where='a = ''x'"],
        "where-bare": ["a = 1 AND NOT b", "content=t"],
        "partition-empty": ["content=t", "partition="],
        "equals-in-value": ["content=a=b", "id = = ="],
        "one-quote": ["content='", "column=\""],
        "no-args": [],
        # Regressions found by `make fuzz`: accepted, but the canonical form stored in the config
        # (every operation in parentheses) nested too deep to be read back.
        "regress-where-negations": ["content=t", "where='collection_id = " + "-" * 64 + "1'"],
        "regress-where-and-chain": ["content=t", "where='" + " AND ".join(["a = 1"] * 70) + "'"],
    }
    for name, args in cases.items():
        write("vtab_options", name, b"\x00".join(a.encode() for a in args))
    # The fuzzer's own input, byte for byte.
    write("vtab_options", "regress-where-nests-deeper-once-stored",
          b"content=embedd" + b"\xff" * 81 + b"rerank=" + b"\xff" * 6 + b"ings\x00where='collection_id = "
          + b"-" * 56 + b"1'\x00partition=collection_id")


def snapshot():
    # Mode 0: byte 0 = 0, byte 1 = loose tables, then 13 config choices (choice, len, bytes):
    # snapshot_bytes, snapshot_chunks, snapshot_checksum, snapshot_seq, format, column, id, pk,
    # factory, metric, dim, params, train_size; choice >> 4: 0 absent, 1-9 correct, 10-15 the
    # bytes given (type choice % 5). Then rows: head (chunk = head - 2, or 0x80 + 8-byte chunk),
    # kind (& 7: 0 blob, 1 text, 2 NULL, 3 integer, 4 real, 5-7 blob; & 8: chunk as text; >> 4:
    # loose tables only, rowid - chunk), data.
    def cfg(choices):
        out = b""
        for c in choices:
            if isinstance(c, tuple):
                choice, value = c
                out += bytes([choice, len(value)]) + value
            else:
                out += bytes([c, 0])
        return out

    def row(chunk, kind, data):
        head = bytes([chunk + 2]) if 0 <= chunk + 2 < 0x80 else b"\x80" + struct.pack("<q", chunk)
        return head + bytes([kind, len(data)]) + data

    correct = [0x10] * 13
    write("snapshot", "store-one-chunk", b"\x00\x00" + cfg(correct) + row(0, 0, b"hello snapshot"))
    write("snapshot", "store-one-chunk-loose", b"\x00\x01" + cfg(correct) + row(0, 5, b"x" * 40))
    write("snapshot", "store-empty", b"\x00\x00" + cfg(correct))
    write("snapshot", "store-empty-blob", b"\x00\x00" + cfg(correct) + row(0, 0, b""))
    write("snapshot", "store-two-chunks", b"\x00\x00" + cfg(correct) + row(0, 0, b"ab") + row(1, 0, b"cd"))
    bad_sum = list(correct)
    bad_sum[2] = (0xA0, b"0000000000000000")
    write("snapshot", "store-bad-checksum", b"\x00\x00" + cfg(bad_sum) + row(0, 0, b"hello"))
    lies = list(correct)
    lies[0] = (0xA0, b"4194305")
    lies[1] = (0xA0, b"2")
    write("snapshot", "store-config-lies", b"\x00\x01" + cfg(lies) + row(0, 0, b"a") + row(1, 0, b"b") + row(2, 0, b"c"))
    huge = list(correct)
    huge[0] = (0xA0, b"18446744073709551615")
    huge[1] = (0xA0, b"4398046511104")
    write("snapshot", "store-huge-length", b"\x00\x00" + cfg(huge) + row(0, 0, b"a"))
    write("snapshot", "store-gap", b"\x00\x00" + cfg(correct) + row(1, 0, b"abc"))
    write("snapshot", "store-negative-chunk", b"\x00\x01" + cfg(correct) + row(-1, 0, b"z") + row(0, 0, b"abc"))
    write("snapshot", "store-big-chunk-number", b"\x00\x01" + cfg(correct) + row(2 ** 62, 0, b"abc"))
    write("snapshot", "store-duplicate-loose", b"\x00\x01" + cfg(correct) + row(0, 0, b"abc") + row(0, 0, b"abc"))
    for kind, name in [(1, "text"), (2, "null"), (3, "integer"), (4, "real")]:
        write("snapshot", "store-chunk-" + name, b"\x00\x01" + cfg(correct) + row(0, kind, b"abcd"))
    write("snapshot", "store-chunk-id-text", b"\x00\x01" + cfg(correct) + row(0, 8, b"abcd"))
    write("snapshot", "store-rowid-not-chunk", b"\x00\x01" + cfg(correct) + row(0, 0x10, b"abcd") + row(1, 0x10, b"efgh"))
    write("snapshot", "store-rowid-far", b"\x00\x01" + cfg(correct) + row(0, 0x10, b"abcd") + row(1, 0xF0, b"efgh"))
    missing = list(correct)
    missing[2] = 0x00
    write("snapshot", "store-missing-checksum", b"\x00\x00" + cfg(missing) + row(0, 0, b"abcd"))
    typed = list(correct)
    typed[0] = (0xA3, b"4")  # integer
    typed[2] = (0xA1, b"not hex")  # blob
    write("snapshot", "store-typed-config", b"\x00\x00" + cfg(typed) + row(0, 0, b"abcd"))
    meta = list(correct)
    meta[4] = (0xA0, b"2")
    meta[9] = (0xA0, b"manhattan")
    meta[10] = (0xA0, b"x")
    meta[11] = (0xA0, b"rerank=0")
    write("snapshot", "store-bad-meta", b"\x00\x00" + cfg(meta) + row(0, 0, b"abcd"))

    # Mode 1: byte 0 = 1, dim byte, metric byte, payload (bytes 24..28 become an unknown tag).
    def header(faiss_len, nslots, magic=b"VEKTSNP1"):
        return magic + struct.pack("<QQ", faiss_len, nslots)

    write("snapshot", "payload-flat-tag", b"\x01\x03\x00" + header(8, 0) + b"IxF2\x04\x00\x00\x00")
    write("snapshot", "payload-with-slots", b"\x01\x03\x01" + header(4, 2) + b"IxF2" + struct.pack("<qq", 1, -(2 ** 63)))
    write("snapshot", "payload-short", b"\x01\x00\x00" + b"VEKTSNP1\x00")
    write("snapshot", "payload-bad-magic", b"\x01\x00\x00" + header(0, 0, b"VEKTSNP2"))
    write("snapshot", "payload-empty-faiss", b"\x01\x00\x00" + header(0, 0))
    write("snapshot", "payload-two-byte-faiss", b"\x01\x00\x00" + header(2, 0) + b"Ix")
    write("snapshot", "payload-huge-faiss", b"\x01\x00\x00" + header(2 ** 64 - 1, 0) + b"abcd")
    write("snapshot", "payload-huge-slots", b"\x01\x00\x00" + header(4, 2 ** 61) + b"abcd")
    write("snapshot", "payload-wrapping", b"\x01\x00\x00" + header(2 ** 64 - 24, 3) + b"abcd" * 6)
    write("snapshot", "payload-odd-slots", b"\x01\x00\x00" + header(4, 1) + b"abcd" + b"\x01" * 7)
    write("snapshot", "payload-empty", b"\x01")

    # Mode 2: byte 0 = 2, factory (0 Flat, 1 HNSW4), metric, dim - 1, count, meta dim (bit 7:
    # fuzzed), meta metric shift, then slots: kind % 4 (0 dead, 1 8-byte rowid, else byte - 8).
    def slots(*xs):
        out = b""
        for x in xs:
            if x is None:
                out += b"\x00"
            elif -8 <= x < 248:
                out += b"\x02" + bytes([x + 8])
            else:
                out += b"\x01" + struct.pack("<q", x)
        return out

    write("snapshot", "trusted-flat", b"\x02\x00\x00\x03\x03\x00\x00" + slots(1, 2, 3))
    write("snapshot", "trusted-flat-dead", b"\x02\x00\x01\x03\x03\x00\x00" + slots(1, None, 3))
    write("snapshot", "trusted-hnsw", b"\x02\x01\x00\x01\x04\x00\x00" + slots(10, 20, 30, 40))
    write("snapshot", "trusted-cosine-extremes", b"\x02\x00\x02\x07\x02\x00\x00" + slots(2 ** 63 - 1, -(2 ** 63) + 1))
    write("snapshot", "trusted-empty", b"\x02\x00\x00\x00\x00\x00\x00")
    write("snapshot", "trusted-duplicate", b"\x02\x00\x00\x03\x03\x00\x00" + slots(1, 2, 1))
    write("snapshot", "trusted-too-few-slots", b"\x02\x00\x00\x03\x03\x00\x00" + slots(1, 2))
    write("snapshot", "trusted-too-many-slots", b"\x02\x01\x00\x03\x01\x00\x00" + slots(1, 2))
    write("snapshot", "trusted-dim-mismatch", b"\x02\x00\x00\x03\x03\x81\x00" + slots(1, 2, 3))
    write("snapshot", "trusted-metric-mismatch", b"\x02\x00\x00\x03\x03\x00\x01" + slots(1, 2, 3))

    # Mode 3: byte 0 = 3, key shape (0 rowid, 1 unstable rowid, 2 columns), partitioned (bit 0),
    # factory, metric, dim - 1, [number of parts, when partitioned], damage (0 none, 1 a handle
    # twice, 2 a key missing, 3 a key's handle wrong, 4 a hash too many, 5 a partition twice,
    # 6 another dimension, 7 partitioned or not, 8 another key shape); then per part: [value
    # kind], count, per slot: dead (% 5 == 0) or gap; then the damage's pick, then a cut (1) or
    # trailing bytes (2) with their length byte.
    def v2(shape, partitioned, damage, parts, cut=b"\x00", dim=2, factory=0):
        out = bytes([3, shape, partitioned, factory, 0, dim - 1])
        if partitioned:
            out += bytes([len(parts)])
        out += bytes([damage])
        for kind, slots in parts:
            if partitioned:
                out += bytes([kind])
            out += bytes([len(slots)])
            for dead in slots:
                out += b"\x00" if dead else b"\x01\x00"
        return out + b"\x00" + cut

    for shape, name in [(0, "rowid"), (1, "unstable"), (2, "keyed")]:
        write("snapshot", f"v2-{name}", v2(shape, 0, 0, [(0, [False, True, False])]))
        write("snapshot", f"v2-{name}-partitioned", v2(shape, 1, 0, [(0, [False]), (1, [False, False]), (2, [])]))
    write("snapshot", "v2-keyed-hnsw", v2(2, 0, 0, [(0, [False] * 5)], factory=1))
    for damage in range(1, 9):
        write("snapshot", f"v2-damage-{damage}", v2(2 if damage < 4 else 1, 1, damage, [(0, [False, False]), (1, [False])]))
    write("snapshot", "v2-cut", v2(2, 1, 0, [(0, [False, False]), (1, [False])], cut=b"\x01\x80"))
    write("snapshot", "v2-trailing", v2(2, 0, 0, [(0, [False])], cut=b"\x02\x03abc"))

    # Mode 4: byte 0 = 4, dim - 1 (% 4), rows (% 24), metric (0 l2, 1 cosine), rows x dim coordinate
    # bytes ((b - 127.5) / 16), how (bit 0: the input's bytes instead of the honest snapshot;
    # (how >> 1) % 8: writes over it), [the input's bytes, length first], per write: offset
    # (2 bytes LE, modulo the length), value (length first); then the seal (0 the right one,
    # only for the honest bytes; 1 none; 2 another key's; 3 the honest snapshot's).
    def forged(rows, how, writes=(), seal=3, raw=None, dim=2, metric=0):
        out = bytes([4, dim - 1, rows, metric]) + bytes((7 * i + 50) % 256 for i in range(rows * dim))
        out += bytes([how | (len(writes) << 1)])
        if raw is not None:
            out += bytes([len(raw)]) + raw
        for at, value in writes:
            out += struct.pack("<H", at) + bytes([len(value)]) + value
        return out + bytes([seal])

    write("snapshot", "forged-honest-sealed", forged(5, 0, seal=0))
    write("snapshot", "forged-honest-unsealed", forged(5, 0, seal=1))
    write("snapshot", "forged-honest-other-key", forged(5, 0, seal=2))
    write("snapshot", "forged-no-rows", forged(0, 0, seal=3, writes=[(24, b"\xff" * 8)]))
    # In the honest v1 payload of a Flat index, FAISS's bytes start at 24: type tag, d (28),
    # ntotal (32), two dummies, is_trained, metric, then the codes' length and the codes.
    for name, at, value in [
        ("dim", 28, struct.pack("<i", 2 ** 31 - 1)),
        ("ntotal", 32, struct.pack("<q", 2 ** 62)),
        ("ntotal-negative", 32, struct.pack("<q", -1)),
        ("metric", 53, struct.pack("<i", 77)),
        ("codes-length", 61, struct.pack("<Q", 2 ** 63)),
        ("slot-count", 16, struct.pack("<Q", 2 ** 60)),
        ("type-tag", 24, b"IHNf"),
    ]:
        write("snapshot", f"forged-{name}", forged(6, 0, writes=[(at, value)]))
    hnsw = b"VEKTSNP1" + struct.pack("<QQ", 40, 0) + b"IHNf" + struct.pack("<iqqqi", 2, 5, 0, 0, 1)
    write("snapshot", "forged-raw-hnsw-header", forged(3, 1, raw=hnsw))
    write("snapshot", "forged-raw-empty", forged(3, 1, raw=b""))


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    vector_codec()
    json_output()
    vtab_options()
    snapshot()
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))))
