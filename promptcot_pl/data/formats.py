"""Prompt formats: the one place where a role's prompt is written and rendered.

A role (`prompts.<role>` in the config: prompt_model, rationale_model, solver, teacher, test_writer, annotator)
has a wording — its words, kept as data in `prompt_texts.yaml` ("release": the PromptCoT releases' texts;
"ours": this project's) — and a style: `raw` (the words as they are, the tokenizer adding its own BOS) or `chat`
(the tokenizer's own chat template via `apply_chat_template`: an optional system turn, one user turn, the
generation prompt added). Token ids come from `data/encode.py`, whose one rule every trainer and engine uses.

Thinking models: a template may open `<think>` in the generation prompt (Qwen3-Thinking, QwQ); `opens_think` says
so, by rendering a probe. Completions of such a model hold only `…</think>answer`; `verify/format.py` knows it.
The release's files move the generation prompt's tail into the completion (`release_layout`).
"""

from __future__ import annotations

import re
from functools import cache, cached_property
from pathlib import Path

import yaml

from promptcot_pl.config import PromptsConfig, RoleFormat

TEXTS_FILE = Path(__file__).with_name("prompt_texts.yaml")
ROLES = ("prompt_model", "rationale_model", "solver", "teacher", "test_writer", "annotator")
# roles whose words live under another name in the texts file (the teacher answers as a solver does)
_TEXT_ROLE = {"teacher": "solver"}
_PROBE = "PROBE-MESSAGE"


@cache
def texts() -> dict:
    return yaml.safe_load(TEXTS_FILE.read_text(encoding="utf-8"))


def words(text_role: str, wording: str, domain: str = "any", **fields: str) -> str:
    """The text of `text_role` (a key of prompt_texts.yaml) in `wording` for `domain`, with `fields` filled in."""
    table = texts()[text_role]
    if wording not in table:
        raise ValueError(f"prompt texts: role {text_role!r} has no {wording!r} wording (it has {sorted(table)})")
    by_domain = table[wording]
    text = by_domain.get(domain, by_domain.get("any"))
    if text is None:
        raise ValueError(f"prompt texts: role {text_role!r}, wording {wording!r} has no text for domain {domain!r}")
    return text.format(**fields)


class PromptFormat:
    """The format of one role for one model's tokenizer (None: raw only, e.g. to write a corpus before the tiny
    tokenizer exists)."""

    def __init__(self, role: str, cfg: RoleFormat, tokenizer=None, where: str = "") -> None:
        if role not in ROLES:
            raise ValueError(f"unknown prompt role {role!r}; roles are {list(ROLES)}")
        self.role, self.cfg, self.tokenizer = role, cfg, tokenizer
        if cfg.style == "chat":
            if tokenizer is None:
                raise ValueError(f"prompts.{role}.style: 'chat' needs the model's tokenizer")
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError(f"prompts.{role}.style: 'chat', but the tokenizer{f' of {where}' if where else ''} "
                                 f"has no chat template; use prompts.{role}.style=raw")
        elif cfg.system is not None:
            raise ValueError(f"prompts.{role}.system: a system turn needs prompts.{role}.style=chat")

    @classmethod
    def words_only(cls, role: str, cfg: RoleFormat) -> PromptFormat:
        """The role's words rendered raw (for corpora written before a tokenizer exists)."""
        return cls(role, RoleFormat("raw", cfg.wording, None, cfg.thinking))

    @property
    def thinking(self) -> bool:
        return self.cfg.thinking

    def message(self, domain: str = "any", text_role: str | None = None, **fields: str) -> str:
        """The role's words (before any chat template)."""
        return words(text_role or _TEXT_ROLE.get(self.role, self.role), self.cfg.wording, domain, **fields)

    def render(self, message: str) -> str:
        """The prompt text a model continues from."""
        if self.cfg.style == "raw":
            return message
        turns = ([{"role": "system", "content": self.cfg.system}] if self.cfg.system else [])
        turns.append({"role": "user", "content": message})
        return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    def prompt(self, domain: str = "any", **fields: str) -> str:
        return self.render(self.message(domain, **fields))

    @cached_property
    def opens_think(self) -> bool:
        """Whether the rendered generation prompt leaves a `<think>` block open (the model starts inside it)."""
        tail = self.render(_PROBE).rsplit(_PROBE, 1)[-1]
        return tail.rfind("<think>") > tail.rfind("</think>")

    def completion_target(self, completion: str) -> str:
        """A completion in the release layout (`<think>\\n…`) as the target after this format's prompt: the opening
        tag is dropped when this template already wrote it."""
        if self.opens_think:
            return re.sub(r"^\s*<think>\n?", "", completion, count=1)
        return completion


def default_format(role: str, tokenizer=None) -> PromptFormat:
    """`role` with the config's default settings for `tokenizer` (None: its words only, rendered raw)."""
    cfg = getattr(PromptsConfig(), role)
    return PromptFormat(role, cfg, tokenizer) if tokenizer is not None else PromptFormat.words_only(role, cfg)


def release_layout(prompt: str, completion: str, opens_think: bool, thinking: bool) -> tuple[str, str]:
    """(prompt, completion) as the release writes them: the prompt ends at the assistant header (its trailing
    newline, and an implicit `<think>` opening, move to the completion), and a thinking model's completion starts
    with `\\n<think>\\n` (`…\\n</think>\\n\\n` + answer)."""
    if opens_think:
        cut = prompt.rfind("<think>")
        prompt, completion = prompt[:cut], prompt[cut:] + completion
    elif thinking and not completion.lstrip().startswith("<think>"):
        completion = "<think>\n" + completion
    head = prompt.rstrip("\n")
    return head, prompt[len(head):] + completion


_CHAT_USER = [  # the user turn in the chat formats eval files come in: ChatML (the release's), Llama-3, [INST]
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),
    re.compile(r"\[INST\](.*?)\[/INST\]", re.S),
]


def user_message(prompt: str) -> str:
    """The user turn of a chat-rendered prompt (ChatML, Llama-3 or [INST]); the text itself when it has none."""
    for pattern in _CHAT_USER:
        found = pattern.findall(prompt)
        if found:
            return found[-1].strip()
    return prompt.strip()


def unwrap_problem(message: str, domain: str) -> str:
    """The bare problem inside a solver message in the release's wording (math instruction, code wrapper), or the
    message itself when it is not wrapped."""
    template = words("solver", "release", domain, problem="\0")
    prefix, suffix = (part.strip() for part in template.split("\0"))
    text = message.strip()
    if prefix and text.startswith(prefix):
        text = text[len(prefix):]
    if suffix and text.rstrip().endswith(suffix):
        text = text.rstrip()[: -len(suffix)]
    return text.strip()
