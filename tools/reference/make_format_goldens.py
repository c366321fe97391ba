#!/usr/bin/env python3
"""Golden files for the ModelFormats tests (GGUF reader, dequantization, safetensors).

Writes Tests/ModelFormatsTests/Goldens/:
  formats.gguf            GGUF v3 written by gguf.GGUFWriter: every metadata value type and one
                          [256, 4] tensor per type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K).
                          Quantized tensors are random bytes with sane fp16 scales, so every bit
                          pattern of the quants is exercised.
  formats-expected.json   metadata as written, and each tensor decoded by gguf.quants.dequantize
                          (the gguf package is the independent reference).
  tensors.safetensors     F32, F16 and BF16 tensors plus __metadata__ (written by hand here:
                          8-byte header length, JSON header, data), and its expected floats.
Run: python3 tools/reference/make_format_goldens.py   (pinned versions: tools/reference/requirements.txt)
"""
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "ModelFormatsTests", "Goldens")
rng = np.random.default_rng(20261122)

# Byte offsets of the fp16 scale fields inside one block, per type (ggml-common.h).
SCALE_FIELDS = {
    T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
ROWS, COLS = 4, 256


def quant_bytes(qtype):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = ROWS * COLS // block_elems
    raw = rng.integers(0, 256, size=(nblocks, block_bytes), dtype=np.uint8)
    for off in SCALE_FIELDS[qtype]:
        scale = rng.uniform(0.001, 0.05, size=nblocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(ROWS, COLS // block_elems * block_bytes)


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "formats.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    meta = {
        "test.uint8": ("add_uint8", 200), "test.int8": ("add_int8", -100),
        "test.uint16": ("add_uint16", 60000), "test.int16": ("add_int16", -30000),
        "test.uint32": ("add_uint32", 4000000000), "test.int32": ("add_int32", -2000000000),
        "test.float32": ("add_float32", 1.5), "test.bool": ("add_bool", True),
        "test.string": ("add_string", "héllo wörld ✓"), "test.uint64": ("add_uint64", 2**63 + 5),
        "test.int64": ("add_int64", -(2**62)), "test.float64": ("add_float64", 3.141592653589793),
        "test.array_int": ("add_array", [1, 2, 3, -4]), "test.array_str": ("add_array", ["a", "bc", "", "ü"]),
        "test.array_float": ("add_array", [0.5, -2.25]),
    }
    for key, (fn, val) in meta.items():
        getattr(w, fn)(key, val)
    expected = {"metadata": {k: v for k, (_, v) in meta.items()}, "tensors": {}}
    expected["metadata"]["general.architecture"] = "llama"

    plain = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    w.add_tensor("t.f32", plain)
    expected["tensors"]["t.f32"] = ("F32", plain)
    w.add_tensor("t.f16", plain.astype(np.float16))
    expected["tensors"]["t.f16"] = ("F16", plain.astype(np.float16).astype(np.float32))
    bf16 = quants.quantize(plain, T.BF16)
    w.add_tensor("t.bf16", bf16, raw_shape=bf16.shape, raw_dtype=T.BF16)
    expected["tensors"]["t.bf16"] = ("BF16", quants.dequantize(bf16, T.BF16))
    for qtype in [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]:
        raw = quant_bytes(qtype)
        name = "t." + qtype.name.lower()
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        expected["tensors"][name] = (qtype.name, quants.dequantize(raw, qtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    exp = {"generator": "tools/reference/make_format_goldens.py", "gguf_version": "0.17.1",
           "metadata": expected["metadata"], "tensors": {}}
    exp["metadata"]["test.uint64"] = str(2**63 + 5)  # JSON numbers lose precision above 2^53
    exp["metadata"]["test.float32"] = 1.5
    for name, (tname, arr) in expected["tensors"].items():
        arr = np.asarray(arr, dtype=np.float32).reshape(ROWS, COLS)
        exp["tensors"][name] = {"type": tname, "shape": [COLS, ROWS], "values": [float(x) for x in arr.reshape(-1)]}

    # safetensors, written by hand so the test does not depend on our own writer.
    st = {"w.f32": plain[:2, :8], "w.f16": plain[:3, :5].astype(np.float16), "w.bf16": plain[1:3, :4]}
    header, blobs, off = {"__metadata__": {"format": "pt", "note": "golden"}}, [], 0
    st_expected = {}
    for name, arr in st.items():
        if name == "w.bf16":
            u = arr.astype(np.float32).view(np.uint32)
            b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            data, dtype = b.tobytes(), "BF16"
            st_expected[name] = (b.astype(np.uint32) << 16).view(np.float32)
        else:
            data = np.ascontiguousarray(arr).tobytes()
            dtype = "F32" if arr.dtype == np.float32 else "F16"
            st_expected[name] = arr.astype(np.float32)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header).encode()
    with open(os.path.join(OUT, "tensors.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    exp["safetensors"] = {n: {"shape": list(a.shape), "values": [float(x) for x in a.reshape(-1)]}
                          for n, a in st_expected.items()}
    with open(os.path.join(OUT, "formats-expected.json"), "w") as f:
        json.dump(exp, f)
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
