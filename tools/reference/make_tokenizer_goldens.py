#!/usr/bin/env python3
"""Generate the tokenizer goldens in Tests/TokenizerTests/Goldens/ with HF `tokenizers`.

Outputs
  smollm2-vocab.json          tokens/merges/token_types/bos/eos/unk/pre/add_bos of SmolLM2 (from the GGUF),
                              so the Swift tests need no model file
  smollm2-tokenizer.json      HF tokenizer.json of the reference built from the GGUF (tokenizer.save)
  tiny-llama3-tokenizer.json  tiny BPE (vocab ~400) trained here with the llama3 Split regex
  tokenizer_goldens.json      header + per case: text, ids (special tokens parsed), ids_plain (special
                              tokens as plain text), decoded, decoded_skip_special; for both tokenizers;
                              streaming cases; ChatML rendering.

Usage: python3 tools/reference/make_tokenizer_goldens.py [MODEL.gguf]
       (default models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repository root)
"""
import datetime
import json
import os
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_from_gguf import LLAMA3_PATTERN, build_tokenizer, read_gguf_vocab  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "TokenizerTests", "Goldens")

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(messages, add_generation_prompt, default_system=DEFAULT_SYSTEM):
    out = ""
    if messages and messages[0]["role"] != "system" and default_system is not None:
        out += f"<|im_start|>system\n{default_system}<|im_end|>\n"
    for m in messages:
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


CHAT = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "2 + 2 = 4."},
    {"role": "user", "content": "Thanks! 😊 And in 日本語?"},
]
CHAT_SYS = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "hi"},
]

CASES = [
    "",
    "Hello world",
    "Hello, world!",
    " ",
    "  ",
    "\t\n",
    "  \n\n  ",
    "\n",
    "\r\n\r\n",
    " leading space",
    "trailing space ",
    "trailing spaces   ",
    "   lots   of    spaces   inside  ",
    "tab\tseparated\tvalues",
    "line one\nline two\n\n\nline five",
    "12345",
    "3.14159",
    "1,000,000",
    "a 1 b  22 c   333",
    "year 2024-11-22T20:45:00Z",
    "x² + y³ = ½ and Ⅻ and ٣٤٥",
    "don't you'll we've I'm he'd she's they're",
    "I'LL DON'T WE'VE SHE'S",
    "''quoted'' and 'single' and \"double\"",
    "Emoji: 😀👍🏽🎉",
    "Family ZWJ: 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵🏳️‍🌈",
    "日本語のテキストです。中文文本。한국어 텍스트",
    "مرحبا بالعالم، كيف حالك؟",
    "Привет, мир! Ελληνικά κείμενα.",
    "café naïve résumé",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "Mixed: hello世界123مرحبا😀abc",
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#frag",
    "email: someone@example.com, path: /usr/local/bin",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|><|im_end|><|endoftext|>",
    "text before<|endoftext|>text after",
    "<|im_sta",
    "<|im_start",
    "<|im_start|",
    "< |im_start|>",
    "<repo_name>anchorkv<file_sep>main.swift",
    "a" * 300,
    "ab" * 150,
    "!!!!!!!!!!????????......",
    "========================================",
    " " * 40 + "x",
    "\n" * 20,
    "non\u00a0breaking\u00a0space and ideographic\u3000space",
    "zero\u200bwidth\u200bspace and BOM\ufeff",
    "control\x00chars\x01\x1f\x7f",
    "Ünïcödé ÀÉÎÕÜ ß ẞ ǅ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
    chatml(CHAT, True),
    chatml(CHAT_SYS, False),
]

STREAMING = [
    "Streaming 😀👍🏽 日本語 👨‍👩‍👧‍👦 café",
    "🇫🇷🇯🇵 한국어 텍스트 مرحبا 𝔘𝔫𝔦",
]

TINY_TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog didn't care; it'd seen foxes before.
We've got 12345 apples and 678 oranges, they're all fresh! I'm sure you'll like them.
def main():
    print("Hello, world!")  # greet
    return 0

Numbers: 3.14159, 2.71828, 1,000,000. Dates: 2024-11-22.
Café, naïve, résumé — Unicode text with accents. 日本語 テキスト. Привет мир.
\tTabs\tand\r\nCRLF lines\r\n and    multiple   spaces.
""" * 3


FUZZ_POOL = [
    " ", " ", " ", "  ", "\t", "\n", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028", "\x0b", "\x1c",
    "a", "e", "s", "t", "l", "L", "S", "T", "D", "re", "ve", "ll", "ſ", "hello", "World", "the", "ing",
    "0", "1", "7", "42", "123", "98765", "²", "½", "Ⅻ", "٣", "𝟙",
    "'", "'", "\"", ".", ",", "!", "?", "-", "_", "(", ")", "{", "}", "#", "/", ":", "=", "<", ">", "|", "...",
    "é", "e\u0301", "ß", "Ω", "ж", "日本", "中", "한", "مرحبا", "😀", "👍🏽", "\u200d", "🇫🇷", "\u200b", "\x00", "\ufeff",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<|im_", "|>", "<|",
]


def fuzz_cases(n=400, seed=1234):
    import random
    rng = random.Random(seed)
    return ["".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def build_tiny_llama3():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=2,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TINY_TRAIN_TEXT], trainer=trainer)
    # Use llama3's ignore_merges=true so the Swift side's support for it is exercised.
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def plain_copy(tok):
    """Same tokenizer without added tokens: special-token text encoded as ordinary text."""
    j = json.loads(tok.to_str())
    j["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def run_cases(tok, texts):
    plain = plain_copy(tok)
    out = []
    for text in texts:
        ids = tok.encode(text).ids
        out.append({
            "text": text,
            "ids": ids,
            "ids_plain": plain.encode(text).ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return out


def write_json(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
    print(f"{os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes")


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(model):
        model = "/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    os.makedirs(OUT, exist_ok=True)
    v = read_gguf_vocab(model)
    smol = build_tokenizer(v)

    # Sanity checks on the reference itself.
    assert smol.encode("Hello world").ids == [19556, 905], smol.encode("Hello world").ids
    assert smol.encode("<|im_start|>user\nhi<|im_end|>").ids[0] == 1
    assert DEFAULT_SYSTEM in (v["chat_template"] or ""), "default system prompt changed"

    gpt2 = build_tokenizer({**v, "pre": "gpt2"})
    llama3 = build_tokenizer({**v, "pre": "llama3"})
    tiny = build_tiny_llama3()
    tiny.save(os.path.join(OUT, "tiny-llama3-tokenizer.json"), pretty=True)
    print(f"tiny vocab size {tiny.get_vocab_size()}")
    smol.save(os.path.join(OUT, "smollm2-tokenizer.json"), pretty=False)
    for n in ("tiny-llama3-tokenizer.json", "smollm2-tokenizer.json"):
        print(f"Tests/TokenizerTests/Goldens/{n}: {os.path.getsize(os.path.join(OUT, n))} bytes")

    write_json("smollm2-vocab.json", {
        "source": os.path.basename(model),
        "pre": v["pre"], "bos": v["bos"], "eos": v["eos"], "unk": v["unk"], "add_bos": v["add_bos"],
        "tokens": v["tokens"], "merges": v["merges"], "token_types": v["token_types"],
    })

    streaming = []
    for text in STREAMING:
        ids = smol.encode(text).ids
        streaming.append({"text": text, "ids": ids, "decoded": smol.decode(ids, skip_special_tokens=False),
                          "pieces": [smol.decode([i], skip_special_tokens=False) for i in ids]})

    goldens = {
        "header": {
            "generator": "tools/reference/make_tokenizer_goldens.py",
            "reference": "tools/reference/tokenizer_from_gguf.py (HF tokenizers pipeline built from GGUF metadata)",
            "tokenizers_version": tokenizers.__version__,
            "model": os.path.basename(model),
            "date": datetime.date.today().isoformat(),
        },
        "chatml": {
            "default_system": DEFAULT_SYSTEM,
            "cases": [
                {"messages": CHAT, "add_generation_prompt": True, "rendered": chatml(CHAT, True)},
                {"messages": CHAT_SYS, "add_generation_prompt": False, "rendered": chatml(CHAT_SYS, False)},
                {"messages": CHAT, "add_generation_prompt": False, "no_default_system": True,
                 "rendered": chatml(CHAT, False, None)},
            ],
        },
        "smollm2": run_cases(smol, CASES),
        "tiny_llama3": run_cases(tiny, CASES),
        "streaming": streaming,
        # Random strings over a pool of hard pieces (fixed seed).
        "fuzz_smollm2": run_cases(smol, fuzz_cases()),
        "fuzz_tiny_llama3": run_cases(tiny, fuzz_cases()),
        # The SmolLM2 vocabulary under the other two pre-tokenizers (llama3 with ignore_merges, as llama.cpp).
        "smollm2_vocab_gpt2": run_cases(gpt2, CASES + fuzz_cases(200)),
        "smollm2_vocab_llama3": run_cases(llama3, CASES + fuzz_cases(200)),
    }
    write_json("tokenizer_goldens.json", goldens)
    print(f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
