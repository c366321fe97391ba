#!/usr/bin/env python3
"""Seeds for the fuzzers (tools/fuzz/corpus/TARGET/seed-*): small real files of every format.

    .venv/bin/python tools/fuzz/make_seeds.py [--anchorkv .build/release/anchorkv]

Made from the committed tiny Llama (Tests/LLMTests/Goldens/tiny-llama, 2 layers, kv_dim 32) so
that each seed is a few KB and passes every check, which lets the fuzzers start past the format's
first gate. The KV file, snapshots and tensor records are written by the anchorkv binary itself;
the GGUF is the tiny model converted with the `gguf` package (q/k rows interleaved per head, as
llama.cpp's converter stores them). Needs numpy and gguf (tools/sac/setup_train.sh installs both).
"""
import argparse, json, os, shutil, struct, subprocess, sys, tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(ROOT, "Tests/LLMTests/Goldens/tiny-llama")
CORPUS = os.path.join(ROOT, "tools/fuzz/corpus")
# Short: the tiny model's byte-heavy vocabulary and 128-token context.
TEXT = "The lighthouse was built by John Smeaton in 1759. It stood for years.\n"


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        raw = b[8 + n + lo:8 + n + hi]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2"}[e["dtype"]]).astype(np.float32)
        out[name] = a.reshape(e["shape"])
    return out


def gguf_seed(path):
    import gguf
    cfg = json.load(open(os.path.join(TINY, "config.json")))
    tok = json.load(open(os.path.join(TINY, "tokenizer.json")))
    w = read_safetensors(os.path.join(TINY, "model.safetensors"))
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [1] * len(tokens)
    for a in sorted(tok["added_tokens"], key=lambda a: a["id"]):
        while len(tokens) <= a["id"]:
            tokens.append(""); types.append(1)
        tokens[a["id"]] = a["content"]; types[a["id"]] = 3
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name("tiny-llama")
    wr.add_context_length(cfg["max_position_embeddings"])
    wr.add_embedding_length(cfg["hidden_size"])
    wr.add_feed_forward_length(cfg["intermediate_size"])
    wr.add_block_count(cfg["num_hidden_layers"])
    wr.add_head_count(cfg["num_attention_heads"])
    wr.add_head_count_kv(cfg["num_key_value_heads"])
    wr.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    wr.add_rope_freq_base(cfg["rope_theta"])
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("llama-bpe")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(cfg["bos_token_id"])
    wr.add_eos_token_id(cfg["eos_token_id"])

    def interleave(m, heads):  # HF rotate-half row order -> GGUF's adjacent pairs
        out_f, in_f = m.shape
        d = out_f // heads
        return m.reshape(heads, 2, d // 2, in_f).swapaxes(1, 2).reshape(out_f, in_f)

    f16 = lambda a: np.ascontiguousarray(a, dtype=np.float16)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)
    wr.add_tensor("token_embd.weight", f16(w["model.embed_tokens.weight"]))
    for i in range(cfg["num_hidden_layers"]):
        p, q = f"model.layers.{i}.", f"blk.{i}."
        wr.add_tensor(q + "attn_norm.weight", f32(w[p + "input_layernorm.weight"]))
        wr.add_tensor(q + "attn_q.weight", f16(interleave(w[p + "self_attn.q_proj.weight"], cfg["num_attention_heads"])))
        wr.add_tensor(q + "attn_k.weight", f16(interleave(w[p + "self_attn.k_proj.weight"], cfg["num_key_value_heads"])))
        wr.add_tensor(q + "attn_v.weight", f16(w[p + "self_attn.v_proj.weight"]))
        wr.add_tensor(q + "attn_output.weight", f16(w[p + "self_attn.o_proj.weight"]))
        wr.add_tensor(q + "ffn_norm.weight", f32(w[p + "post_attention_layernorm.weight"]))
        wr.add_tensor(q + "ffn_gate.weight", f16(w[p + "mlp.gate_proj.weight"]))
        wr.add_tensor(q + "ffn_up.weight", f16(w[p + "mlp.up_proj.weight"]))
        wr.add_tensor(q + "ffn_down.weight", f16(w[p + "mlp.down_proj.weight"]))
    wr.add_tensor("output_norm.weight", f32(w["model.norm.weight"]))
    wr.write_header_to_file(); wr.write_kv_data_to_file(); wr.write_tensors_to_file(); wr.close()


def frames(path):
    """(tag, payload) of each snapshot frame (docs/snapshots.md)."""
    b = open(path, "rb").read()
    at, out = 16, []
    while at < len(b):
        tag, n = b[at], struct.unpack_from("<I", b, at + 1)[0]
        out.append((tag, b[at + 5:at + 5 + n]))
        at += 9 + n
    return out


def resp_seeds(d):
    """Replies a Redis Cluster sends (RESP2), one value per file."""
    def bulk(b):
        return b"$%d\r\n%s\r\n" % (len(b), b)

    def arr(*items):
        return b"*%d\r\n" % len(items) + b"".join(items)

    node = lambda host, port, nid: arr(bulk(host), b":%d\r\n" % port, bulk(nid))  # noqa: E731
    seeds = {
        "cluster-slots": arr(arr(b":0\r\n", b":5460\r\n", node(b"127.0.0.1", 7000, b"a" * 40), node(b"127.0.0.1", 7003, b"b" * 40)),
                             arr(b":5461\r\n", b":10922\r\n", node(b"127.0.0.1", 7001, b"c" * 40))),
        "moved": b"-MOVED 3999 127.0.0.1:7002\r\n",
        "exec": arr(b"+OK\r\n", b":1\r\n", bulk(bytes(range(256))), b"$-1\r\n", b"*-1\r\n", arr()),
        "wait": b":1\r\n",
    }
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-%s.resp" % name), "wb") as f:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--anchorkv", default=os.path.join(ROOT, ".build/release/anchorkv"))
    args = ap.parse_args()
    dirs = {t: os.path.join(CORPUS, t) for t in
            ["gguf", "safetensors", "kv-file", "snapshot", "tensor-record", "tokenizer-json", "http-body", "resp"]}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.unlink(os.path.join(d, f))

    resp_seeds(dirs["resp"])
    gguf_seed(os.path.join(dirs["gguf"], "seed-tiny-llama.gguf"))
    shutil.copy(os.path.join(ROOT, "Tests/SACTests/Goldens/tiny-adapter-r51.safetensors"), os.path.join(dirs["safetensors"], "seed-tiny-adapter-r51.safetensors"))
    shutil.copy(os.path.join(ROOT, "Tests/TokenizerTests/Goldens/tiny-llama3-tokenizer.json"), os.path.join(dirs["tokenizer-json"], "seed-tiny-llama3.json"))
    shutil.copy(os.path.join(TINY, "tokenizer.json"), os.path.join(dirs["tokenizer-json"], "seed-tiny-llama.json"))

    with tempfile.TemporaryDirectory() as tmp:
        doc = os.path.join(tmp, "lighthouse.txt")
        open(doc, "w").write(TEXT)
        def akv(*a):
            subprocess.run([args.anchorkv, *a, "--model", TINY, "--threads", "1"], check=True, cwd=tmp,
                           stdout=subprocess.DEVNULL)
        akv("compress", "--no-adapter", doc, "-o", os.path.join(dirs["kv-file"], "seed-plain-f16.akv"))
        akv("compress", "--no-adapter", "--dtype", "f32", "--ratio", "3", doc, "-o", os.path.join(dirs["kv-file"], "seed-plain-r3-f32.akv"))
        n = 0
        for dtype, compression in [("f16", "none"), ("bf16", "lz4"), ("int8", "auto")]:
            store = os.path.join(tmp, f"store-{dtype}")
            akv("ingest", "--store", store, "--no-adapter", "--dtype", dtype, "--compression", compression, doc)
            snap = os.path.join(dirs["snapshot"], f"seed-{dtype}-{compression}.akvs")
            akv("export", "--store", store, "-o", snap)
            for tag, payload in frames(snap):
                if tag == 3 and n < 6:  # KV frame: u32 window, u16 layer, the stored record
                    open(os.path.join(dirs["tensor-record"], f"seed-{dtype}-{compression}-{n}.bin"), "wb").write(payload[6:])
                    n += 1

    bodies = {
        "ingest": {"documents": [{"id": "notes/lighthouse", "text": TEXT, "title": "Lighthouse", "source": "seed"}], "async": False},
        "ingest-one": {"id": "a", "text": "Short text."},
        "query": {"question": "Who built the lighthouse?", "k": 2, "documents": ["notes/lighthouse"], "max_tokens": 16, "stream": False},
        "chat": {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Who built it?"}]}], "max_tokens": 8, "temperature": 0.5,
                 "top_p": 0.9, "seed": 7, "stream": True, "stream_options": {"include_usage": True}, "anchorkv": {"k": 3}},
        "export": {"documents": ["a", "b"]},
        "compact": {"to_ratio": 15, "documents": ["a"], "older_than": "30d", "no_adapter": False},
    }
    for name, body in bodies.items():
        open(os.path.join(dirs["http-body"], f"seed-{name}.json"), "w").write(json.dumps(body))
    for t, d in sorted(dirs.items()):
        files = sorted(os.listdir(d))
        print(f"{t}: {len(files)} files, {sum(os.path.getsize(os.path.join(d, f)) for f in files)} bytes")


if __name__ == "__main__":
    main()
