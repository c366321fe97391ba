#!/usr/bin/env python3
"""Hostile-but-well-formed inputs for AnchorKV, standard library only.

Every file is rewritten as an attacker would: the edit is made, then every checksum the format
has (snapshot frame CRC32C, tensor-record CRC32C, the manifest's and trailer's counts, the
trailer's sha256) is recomputed, so only the readers' semantic checks can stop it.

    python3 tools/hostile/make_hostile.py --snapshot kb.akvs --kv notes.akv --gguf model.gguf OUTDIR

writes OUTDIR/*.akvs, *.akv, *.gguf and OUTDIR/cases.json: for each file the command to try
("inspect": `anchorkv snapshot inspect --verify`, "import": `anchorkv import`, "ask":
`anchorkv ask --context`, "model": `anchorkv generate --model`), the phrase the refusal must
contain, and whether the file is consistent in itself (refused only against a store). Used by
Tests/AnchorKVCoreTests/HostileFileTests.swift on the debug and the release binary.
"""
import argparse, hashlib, json, os, struct, sys

# ---- CRC32C (Castagnoli), as the store and the snapshot format use it --------------------
_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

# ---- snapshots (docs/snapshots.md) ----------------------------------------------------------
HEADER = 16  # "AKVSNAP\n" | u32 version | u32 reserved
MANIFEST, DOCUMENT, KV, TRAILER = 1, 2, 3, 127

def read_frames(path):
    b = open(path, "rb").read()
    head, frames, at = b[:HEADER], [], HEADER
    while at < len(b):
        tag, n = b[at], struct.unpack_from("<I", b, at + 1)[0]
        if tag == TRAILER:
            break
        frames.append([tag, bytearray(b[at + 5:at + 5 + n])])
        at += 5 + n + 4
    return head, frames

def write_frames(head, frames, path):
    docs = [f for f in frames if f[0] == DOCUMENT]
    m = json.loads(frames[0][1])
    m["documents"] = len(docs)
    m["windows"] = sum(len(json.loads(d[1])["windows"]) for d in docs)
    m["kvRecords"] = sum(1 for f in frames if f[0] == KV)
    frames[0][1] = bytearray(json.dumps(m, sort_keys=True).encode())
    out = bytearray(head)
    def frame(tag, payload):
        h = bytes([tag]) + struct.pack("<I", len(payload))
        out.extend(h + payload + struct.pack("<I", crc32c(payload, crc32c(h))))
    for tag, payload in frames:
        frame(tag, bytes(payload))
    trailer = {"documents": m["documents"], "windows": m["windows"], "kvRecords": m["kvRecords"],
               "sha256": hashlib.sha256(out).hexdigest()}
    frame(TRAILER, json.dumps(trailer).encode())
    open(path, "wb").write(out)

def doc_json(f):
    return json.loads(f[1])

def set_doc_json(f, j):
    f[1] = bytearray(json.dumps(j, sort_keys=True).encode())

def record(f):
    return f[1][6:]

def set_record(f, rec):
    f[1] = f[1][:6] + rec

def reseal(rec):
    """A tensor record's CRC32C (at 24, over header bytes 0..24 and the payload) made anew."""
    rec = bytearray(rec)
    struct.pack_into("<I", rec, 24, crc32c(bytes(rec[28:]), crc32c(bytes(rec[:24]))))
    return rec

def snapshot_cases(src, out):
    head, frames = read_frames(src)
    doc_at = [i for i, f in enumerate(frames) if f[0] == DOCUMENT]
    layers = json.loads(frames[0][1])["layers"]
    cases = []

    def case(name, phrase, edit, alone_ok=False):
        fr = [[t, bytearray(p)] for t, p in frames]
        edit(fr)
        path = os.path.join(out, name + ".akvs")
        write_frames(head, fr, path)
        cases.append({"file": os.path.basename(path), "class": name, "phrase": phrase, "alone_ok": alone_ok,
                      "commands": ["inspect", "import"]})

    def first_kv(fr, doc=0):
        return fr[doc_at[doc] + 1]

    def windows_of(fr, doc=0):
        return len(doc_json(fr[doc_at[doc]])["windows"])

    # 1. a KV frame naming a window past the document's last one
    def past_last(fr):
        last = doc_at[0] + windows_of(fr) * layers
        struct.pack_into("<I", fr[last][1], 0, windows_of(fr))
    case("kv-frame-past-last-window", "which has 1 windows", past_last)

    # 2. tensor shapes: rows x cols that wrap the size arithmetic; an LZ4 raw size nothing gives
    def wrap(fr):
        rec = bytearray(record(first_kv(fr)))
        struct.pack_into("<II", rec, 8, 0x40000000, 0x40000000)
        set_record(first_kv(fr), reseal(rec))
    case("tensor-shape-wraps", "too large for a record", wrap)

    def lz4_claim(fr):
        rec = bytearray(record(first_kv(fr)))
        rec[6] |= 1  # flag: LZ4
        struct.pack_into("<I", rec, 16, 0x7FFFFFF0)  # raw size
        set_record(first_kv(fr), reseal(rec))
    case("lz4-raw-size-claim", "needs", lz4_claim)

    # 2b. anchor positions outside the window (an uncompressed record: positions lead the payload)
    def positions(fr):
        for l in range(layers):
            f = fr[doc_at[0] + 1 + l]
            rec = bytearray(record(f))
            if rec[6] & 1:
                return
            struct.pack_into("<i", rec, 28, 100000)
            set_record(f, reseal(rec))
    case("anchor-position-outside-window", "anchor positions are not ascending inside the window", positions)

    # 3. a layer count other than the store's (the file is consistent in itself)
    def one_layer(fr):
        m = json.loads(fr[0][1])
        m["layers"] = 1
        fr[0][1] = bytearray(json.dumps(m, sort_keys=True).encode())
        keep = [fr[0]]
        for f in fr[1:]:
            if f[0] != KV or struct.unpack_from("<H", f[1], 4)[0] == 0:
                keep.append(f)
        fr[:] = keep
    case("one-layer-of-many", "layers of KV per window, but the store's model has", one_layer, alone_ok=True)

    # 4. index terms, ids, ratios, token ids
    def edit_doc(edit_record=None, edit_window=None):
        def e(fr):
            j = doc_json(fr[doc_at[0]])
            if edit_record:
                edit_record(j["record"])
            if edit_window:
                edit_window(j["windows"][0])
            set_doc_json(fr[doc_at[0]], j)
        return e
    case("term-with-nul", "index term", edit_doc(edit_window=lambda w: w["terms"].update({"bee\u0000s": 1})))
    case("negative-term-frequency", "frequency -1", edit_doc(edit_window=lambda w: w["terms"].update({"bees": -1})))
    case("empty-id", "document id", edit_doc(edit_record=lambda r: r.update({"id": ""})))
    case("control-character-id", "document id", edit_doc(edit_record=lambda r: r.update({"id": "a\u0001b"})))
    case("ratio-above-u16", "outside 1...65535", edit_doc(edit_record=lambda r: r.update({"ratio": 70000})))
    case("negative-token-id", "negative token id", edit_doc(edit_window=lambda w: w["tokens"].__setitem__(0, -5)))

    # 5. one document twice
    def twice(fr):
        if len(doc_at) < 2:
            return
        j = doc_json(fr[doc_at[1]])
        j["record"]["id"] = doc_json(fr[doc_at[0]])["record"]["id"]
        set_doc_json(fr[doc_at[1]], j)
    case("repeated-id", "appears twice", twice)
    return cases

# ---- KV files (safetensors with the layout in __metadata__) --------------------------------
def kv_cases(src, out):
    b = open(src, "rb").read()
    n = struct.unpack_from("<Q", b, 0)[0]
    header, data = json.loads(b[8:8 + n]), b[8 + n:]
    cases = []

    def case(name, phrase, edit):
        h = json.loads(json.dumps(header))
        edit(h["__metadata__"])
        raw = json.dumps(h).encode()
        path = os.path.join(out, name + ".akv")
        open(path, "wb").write(struct.pack("<Q", len(raw)) + raw + data)
        cases.append({"file": os.path.basename(path), "class": name, "phrase": phrase, "alone_ok": False, "commands": ["ask"]})

    def positions(md, v):
        p = md["positions"].split(",")
        p[0] = v
        md["positions"] = ",".join(p)
    case("kv-position-zero", "outside 1...", lambda md: positions(md, "0"))
    case("kv-position-past-context", "anchor positions must be ascending", lambda md: positions(md, str(10 ** 9)))
    case("kv-anchor-counts-disagree", "window anchor counts do not add up", lambda md: md.update({"window_anchor_counts": "1"}))
    case("kv-context-length-huge", "the context length", lambda md: md.update({"context_length": str(2 ** 62)}))
    return cases

# ---- GGUF -----------------------------------------------------------------------------------
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

def _skip_value(b, at, t):
    if t in _SCALAR:
        return at + _SCALAR[t]
    if t == 8:
        return at + 8 + struct.unpack_from("<Q", b, at)[0]
    if t == 9:
        et, count = struct.unpack_from("<IQ", b, at)
        at += 12
        for _ in range(count):
            at = _skip_value(b, at, et)
        return at
    raise ValueError(f"unknown GGUF value type {t}")

def gguf_layout(b):
    """Offsets of every metadata value and of every tensor's dims."""
    assert b[:4] == b"GGUF"
    n_tensors, n_kv = struct.unpack_from("<QQ", b, 8)
    at, values, tensors = 24, {}, {}
    for _ in range(n_kv):
        k = struct.unpack_from("<Q", b, at)[0]
        key = b[at + 8:at + 8 + k].decode()
        at += 8 + k
        t = struct.unpack_from("<I", b, at)[0]
        values[key] = (t, at + 4)
        at = _skip_value(b, at + 4, t)
    for _ in range(n_tensors):
        k = struct.unpack_from("<Q", b, at)[0]
        name = b[at + 8:at + 8 + k].decode()
        at += 8 + k
        dims = struct.unpack_from("<I", b, at)[0]
        tensors[name] = (dims, at + 4)
        at += 4 + 8 * dims + 4 + 8
    return values, tensors

def gguf_cases(src, out):
    b = bytearray(open(src, "rb").read())
    values, tensors = gguf_layout(b)
    arch = "llama"
    cases = []

    def case(name, phrase, edit):
        c = bytearray(b)
        edit(c)
        path = os.path.join(out, name + ".gguf")
        open(path, "wb").write(c)
        cases.append({"file": os.path.basename(path), "class": name, "phrase": phrase, "alone_ok": False, "commands": ["model"]})

    def set_u32(key, v):
        def e(c):
            t, at = values[key]
            assert t == 4, (key, t)
            struct.pack_into("<I", c, at, v)
        return e
    case("gguf-head-count-zero", "head_count is 0", set_u32(f"{arch}.attention.head_count", 0))
    case("gguf-block-count-huge", "has no tensor", set_u32(f"{arch}.block_count", 0xFFFFFFF))

    def overflow(c):
        dims, at = tensors["token_embd.weight"]
        for d in range(dims):
            struct.pack_into("<Q", c, at + 8 * d, 1 << 40)
    case("gguf-shape-overflows", "more elements than can be counted", overflow)

    def past_end(c):
        dims, at = tensors["output_norm.weight"] if "output_norm.weight" in tensors else next(iter(tensors.values()))
        struct.pack_into("<Q", c, at + 8 * dims + 4, (len(c) // 32) * 32)
    case("gguf-data-past-end", "runs past the end of the file", past_end)
    return cases

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", help="a real snapshot (anchorkv export)")
    ap.add_argument("--kv", help="a real KV file (anchorkv compress)")
    ap.add_argument("--gguf", help="a real GGUF model")
    ap.add_argument("out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cases = []
    if a.snapshot:
        cases += snapshot_cases(a.snapshot, a.out)
    if a.kv:
        cases += kv_cases(a.kv, a.out)
    if a.gguf:
        cases += gguf_cases(a.gguf, a.out)
    json.dump(cases, open(os.path.join(a.out, "cases.json"), "w"), indent=1)
    print(f"{len(cases)} hostile files in {a.out}", file=sys.stderr)

if __name__ == "__main__":
    main()
