"""Offline tokenizers with the conventions of the real model families, trained on a corpus with `tokenizers`.

Real checkpoints differ in exactly the ways that break prompt/target tokenisation, so the tiny test models come
in three styles (the chat templates are short Jinja copies of the families' own):

- `chatml`   Qwen2.5/Qwen3-like: byte-level BPE, no BOS, `<|im_end|>` ends a turn and is the EOS, `<|endoftext|>`
             is the pad token and a second EOS id of the generation config; ChatML template. With `thinking` the
             template opens `<think>` in the generation prompt (Qwen3-Thinking, QwQ), so completions hold only
             `…</think>answer`.
- `llama3`   Llama-3-Instruct-like: byte-level BPE, `<|begin_of_text|>` BOS added by the post-processor and written
             by the template, `<|eot_id|>` EOS, no pad token (pad = EOS once loaded), EOS ids [eot, end_of_text].
- `sentencepiece`  Llama-2/Mistral-like: BPE over a Metaspace pre-tokenizer that prepends "▁" to the text, BOS
             `<s>`, EOS `</s>`, no pad token, an `[INST] … [/INST]` template. Encoding a target on its own gives it
             a leading "▁" that the joint tokenisation does not have (the reason for `data/encode.py`).

`<think>`/`</think>` are added tokens that are not special, so decoding with `skip_special_tokens` keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

THINK_TOKENS = ("<think>", "</think>")

CHATML = ("{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{%- endif %}")
CHATML_THINKING = CHATML.replace("{{ '<|im_start|>assistant\\n' }}", "{{ '<|im_start|>assistant\\n<think>\\n' }}")
LLAMA3 = ("{{ bos_token }}{%- for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
MISTRAL = ("{{ bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}{{ '[INST] ' + "
           "message['content'] + ' [/INST]' }}{%- elif message['role'] == 'assistant' %}{{ message['content'] + "
           "eos_token }}{%- endif %}{%- endfor %}")


@dataclass(frozen=True)
class Style:
    specials: tuple[str, ...]  # the first ones get the lowest ids
    eos: str
    pad: str | None
    bos: str | None
    stop: tuple[str, ...]  # every EOS id of the generation config, the turn end first
    template: str
    sentencepiece: bool = False


STYLES = {
    "chatml": Style(("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|im_end|>", pad="<|endoftext|>",
                    bos=None, stop=("<|im_end|>", "<|endoftext|>"), template=CHATML),
    "llama3": Style(("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>"), eos="<|eot_id|>", pad=None, bos="<|begin_of_text|>",
                    stop=("<|eot_id|>", "<|end_of_text|>"), template=LLAMA3),
    "sentencepiece": Style(("<unk>", "<s>", "</s>"), eos="</s>", pad=None, bos="<s>", stop=("</s>",),
                           template=MISTRAL, sentencepiece=True),
}


def train_tokenizer(texts: Sequence[str], vocab_size: int, style: str = "chatml",
                    thinking: bool = False, split_digits: bool = False) -> PreTrainedTokenizerFast:
    """`split_digits`: every digit is a token of its own, as in Qwen2/Qwen2.5 and Llama-2 (a BPE that merges digit
    runs gives 47 and 48 unrelated tokens, so column arithmetic cannot be learned digit by digit)."""
    spec = STYLES[style]
    if spec.sentencepiece:
        bpe = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
        bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        # every printable ASCII character and newline, plus the corpus's own (unknown ones map to <unk>)
        alphabet = sorted({chr(c) for c in range(33, 127)} | {"\n", "▁"}
                          | {ch for text in texts for ch in text.replace(" ", "▁")})
    else:
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    if split_digits:  # after the base split, so a digit keeps the space before it: " 4", "7" for " 47"
        space = "▁" if spec.sentencepiece else "Ġ"
        bpe.pre_tokenizer = pre_tokenizers.Sequence([bpe.pre_tokenizer, pre_tokenizers.Split(
            Regex(f"{space}?[0-9]"), behavior="isolated")])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(spec.specials),
                                  initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    if spec.bos is not None:  # the tokenizer itself adds BOS, as Llama's do
        bos_id = bpe.token_to_id(spec.bos)
        bpe.post_processor = processors.TemplateProcessing(single=f"{spec.bos} $A", pair=f"{spec.bos} $A $B",
                                                           special_tokens=[(spec.bos, bos_id)])
    extra = {"bos_token": spec.bos} if spec.bos else {}
    if spec.pad:
        extra["pad_token"] = spec.pad
    if spec.sentencepiece:
        extra["unk_token"] = "<unk>"
    template = CHATML_THINKING if thinking and style == "chatml" else spec.template
    if thinking and style != "chatml":
        raise ValueError("a thinking template is built for the chatml style only (Qwen3-Thinking / QwQ)")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=spec.eos, clean_up_tokenization_spaces=False,
                                        **extra)
    tokenizer.chat_template = template
    return tokenizer


def stop_ids(tokenizer: PreTrainedTokenizerFast, style: str) -> list[int]:
    """The generation config's EOS ids for a tokenizer of `style`."""
    return [cast(int, tokenizer.convert_tokens_to_ids(t)) for t in STYLES[style].stop]  # one token: one id
