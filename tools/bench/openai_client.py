#!/usr/bin/env python3
"""Checks `anchorkv serve`'s OpenAI-compatible endpoint with the official `openai` package.

    pip install openai
    python3 tools/bench/openai_client.py --base-url http://127.0.0.1:8080/v1 [--api-key TOKEN] [--question "..."]

Lists the models, asks one question plainly and streamed, and checks that both give the same
answer (greedy), with usage counts and the anchorkv extension. Exit status 0 when all hold.
"""
import argparse, sys

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--api-key", default="none", help="the service's bearer token, if it has one")
    ap.add_argument("--question", default="Who decoded the waggle dance of honey bees?")
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    try:
        from openai import OpenAI
    except ImportError:
        print("the openai package is not installed (pip install openai)", file=sys.stderr)
        return 2
    client = OpenAI(base_url=a.base_url, api_key=a.api_key)
    model = client.models.list().data[0].id
    print("model:", model)
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": a.question}], max_tokens=a.max_tokens)
    answer = r.choices[0].message.content
    print("answer:", answer, "| finish:", r.choices[0].finish_reason, "| usage:", r.usage)
    extra = (r.model_extra or {}).get("anchorkv") or {}
    print("citations:", [c.get("document") for c in extra.get("citations", [])])
    streamed = ""
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": a.question}],
                                                max_tokens=a.max_tokens, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            streamed += chunk.choices[0].delta.content
    ok = streamed == answer and r.usage.completion_tokens > 0 and bool(extra.get("citations"))
    print("streamed answer is the same:", streamed == answer)
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
