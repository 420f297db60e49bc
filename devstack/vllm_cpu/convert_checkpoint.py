"""Turn SmolLM2's GGUF file into a float32 safetensors checkpoint that vLLM loads.

Run as a script by whichever interpreter has transformers, gguf, accelerate and safetensors
(`python convert_checkpoint.py GGUF OUT_DIR`); it imports nothing from this repository.
transformers de-quantises the GGUF, but refuses to `save_pretrained` a GGUF-quantised model,
so the weights go through safetensors directly and the config loses its quantization_config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def convert(gguf: Path, out: Path) -> None:
    import torch
    import transformers
    from safetensors.torch import save_file

    hf_logging: Any = transformers.utils.logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        # Tied: lm_head.weight is the embedding matrix itself; safetensors refuses shared
        # storage, and vLLM ties them again from the config.
        state.pop("lm_head.weight", None)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: convert_checkpoint.py GGUF_FILE OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
