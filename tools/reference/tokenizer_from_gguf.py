#!/usr/bin/env python3
"""Build an independent HF `tokenizers.Tokenizer` from the tokenizer metadata of a GGUF file.

This is the reference AnchorKV's Swift BPETokenizer is checked against. It reads only the
GGUF metadata (tokens, merges, token types, special ids, pre-tokenizer name) with
`gguf.GGUFReader` and assembles the HF pipeline by hand:

  model          BPE(vocab, merges), no unk handling needed (byte-level covers all bytes)
  pre-tokenizer  by tokenizer.ggml.pre:
                   smollm -> Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
                   gpt2   -> ByteLevel(add_prefix_space=False, use_regex=True)
                   llama3 / llama-bpe -> Sequence[Split(llama3 regex, isolated), ByteLevel(use_regex=False)]
  decoder        ByteLevel
  special tokens token type CONTROL (3) or USER_DEFINED (4), added as AddedToken(special=True, normalized=False)

Usage: python3 tokenizer_from_gguf.py MODEL.gguf [--save tokenizer.json] [TEXT...]
"""
import json
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


def _field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    return f


def _str(reader, key):
    f = _field(reader, key)
    if f is None:
        return None
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def _int(reader, key):
    f = _field(reader, key)
    if f is None:
        return None
    return int(f.parts[f.data[0]][0])


def _str_array(reader, key):
    f = _field(reader, key)
    if f is None:
        return None
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def _int_array(reader, key):
    f = _field(reader, key)
    if f is None:
        return None
    return [int(f.parts[i][0]) for i in f.data]


def read_gguf_vocab(path):
    """Returns dict(tokens, merges, token_types, bos, eos, unk, pre, model, add_bos, chat_template)."""
    r = gguf.GGUFReader(path)
    add_bos = _field(r, "tokenizer.ggml.add_bos_token")
    return {
        "model": _str(r, "tokenizer.ggml.model"),
        "pre": _str(r, "tokenizer.ggml.pre"),
        "tokens": _str_array(r, "tokenizer.ggml.tokens"),
        "merges": _str_array(r, "tokenizer.ggml.merges"),
        "token_types": _int_array(r, "tokenizer.ggml.token_type"),
        "bos": _int(r, "tokenizer.ggml.bos_token_id"),
        "eos": _int(r, "tokenizer.ggml.eos_token_id"),
        "unk": _int(r, "tokenizer.ggml.unknown_token_id"),
        "add_bos": bool(add_bos.parts[add_bos.data[0]][0]) if add_bos is not None else False,
        "chat_template": _str(r, "tokenizer.chat_template"),
    }


def pre_tokenizer_for(pre):
    if pre == "smollm":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    if pre in ("gpt2", "gpt-2", None, "default"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("llama3", "llama-bpe"):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    raise SystemExit(f"unsupported tokenizer.ggml.pre {pre!r}")


def build_tokenizer(v):
    if v["model"] != "gpt2":
        raise SystemExit(f"unsupported tokenizer.ggml.model {v['model']!r} (need gpt2 = byte-level BPE)")
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in v["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=v["pre"] in ("llama3", "llama-bpe")))
    tok.pre_tokenizer = pre_tokenizer_for(v["pre"])
    tok.decoder = decoders.ByteLevel()
    types = v["token_types"] or []
    specials = [AddedToken(v["tokens"][i], special=True, normalized=False)
                for i, t in enumerate(types) if t in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)]
    tok.add_special_tokens(specials)
    return tok


def tokenizer_from_gguf(path):
    return build_tokenizer(read_gguf_vocab(path))


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    path = args.pop(0)
    tok = tokenizer_from_gguf(path)
    if len(args) >= 2 and args[0] == "--save":
        tok.save(args[1])
        args = args[2:]
    for text in args:
        ids = tok.encode(text).ids
        print(json.dumps({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)},
                         ensure_ascii=False))
