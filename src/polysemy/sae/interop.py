"""Read and write the SAE checkpoints of SAELens, sparsify and dictionary_learning.

Every format is translated to and from one neutral form, `SAEWeights`, which follows our
checkpoint convention (DESIGN.md section 4):

    encode(x) = act((x - b_dec) @ W_enc + b_enc)        decode(z) = z @ W_dec + b_dec

with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, and `act` ReLU (relu), ReLU of the k
largest entries (topk), or ReLU above a per-latent threshold (jumprelu, batchtopk at
inference). A foreign convention that differs only by an affine rearrangement is folded into
the weights so the imported SAE computes the same function (see `docs/sae-evaluation.md`):

- an encoder that does not subtract `b_dec` first (SAELens `apply_b_dec_to_input=False`,
  dictionary_learning's JumpReLU): `b_enc += b_dec @ W_enc`;
- SAELens TopK with `rescale_acts_by_decoder_norm=True` (pre-activations scaled by the
  decoder row norms n_j, latents divided by them before decoding): `W_enc[:, j] *= n_j`,
  `b_enc[j] *= n_j`, `W_dec[j] /= n_j` (same latents, same reconstruction);
- SAELens pre-6.0 `scaling_factor` (latents multiplied before decoding): `W_dec[j] *= s_j`.

What cannot be represented is refused with a ValueError naming the setting: run-time
normalisation (`layer_norm`, `constant_norm_rescale`, whitening), gated / matryoshka
architectures, SAELens's transcoders, sparsify's skip connection on an SAE or groupmax
activation.

Transcoders (`transcoder`, `skip-transcoder`: TopK, `encode(x) = TopK(x @ W_enc + b_enc)`,
`W_dec [d_sae, d_out]`, `b_dec [d_out]`, `W_skip [d_in, d_out]`) travel to and from sparsify,
whose `transcode=true` coders compute exactly that (`skip_connection=true` adds
`x @ W_skip.T` with its `W_skip [d_out, d_in]`), where d_out = d_in (sparsify holds one
width). SAELens 6 has transcoder classes only with ReLU and JumpReLU activations, which
cannot compute a TopK code, so a TopK transcoder is refused there rather than approximated.

Files are read with safetensors; dictionary_learning's `ae.pt` is a pickle by format and is
read with `torch.load(weights_only=True)` only, which refuses anything but tensors.

>>> sae = import_sae("saelens", "downloads/blocks.3.hook_resid_post")    # doctest: +SKIP
>>> export_sae(sae, "sparsify", "out/layers.3")                           # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.runfolder import atomic_folder, atomic_save_safetensors, atomic_write_json

logger = logging.getLogger(__name__)

IMPORT_FORMATS: tuple[str, ...] = ("saelens", "sparsify", "dictionary_learning")
"""Formats `import_sae` reads."""
EXPORT_FORMATS: tuple[str, ...] = ("saelens", "sparsify")
"""Formats `export_sae` writes."""

SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_CONFIG = "cfg.json"
SPARSIFY_WEIGHTS = "sae.safetensors"
SPARSIFY_CONFIG = "cfg.json"
DICTIONARY_LEARNING_WEIGHTS = "ae.pt"

# The SAELens version whose folder layout `write_saelens` follows; a `sae_lens_version` of 6
# or more in the metadata tells SAELens's loader not to apply its pre-6.0 key renaming.
_SAELENS_LAYOUT_VERSION = "6.0.0"


class SAEWeights(NamedTuple):
    """An SAE's weights in our convention (see module docstring), independent of any class."""

    arch: str
    """`relu`, `topk`, `batchtopk` or `jumprelu`."""
    W_enc: Float[Tensor, "d_in d_sae"]
    b_enc: Float[Tensor, " d_sae"]
    W_dec: Float[Tensor, "d_sae d_in"]
    b_dec: Float[Tensor, " d_in"]
    threshold: Float[Tensor, " d_sae"] | None
    """Per-latent inference threshold (jumprelu, batchtopk), else None."""
    k: int | None
    """Active latents per row (TopK family), else None."""
    source: dict[str, Any]
    """Provenance: the foreign format, path, model and site where known."""
    W_skip: Float[Tensor, "d_in d_out"] | None = None
    """skip-transcoder: the linear skip term (`+ x @ W_skip`), else None."""

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0] if self.arch in _TRANSCODERS else self.W_dec.shape[1])

    @property
    def d_out(self) -> int:
        """Width of the output: d_in for an SAE, the predicted site's for a transcoder."""
        return int(self.W_dec.shape[1])

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])


_ARCHS = ("relu", "topk", "batchtopk", "jumprelu", "transcoder", "skip-transcoder")
_TRANSCODERS = ("transcoder", "skip-transcoder")

# ---- validation helpers ------------------------------------------------------------------


def _where(path: Path, name: str) -> str:
    return f"{str(path / name)!r}"


def _read_json(path: Path, name: str) -> dict[str, Any]:
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"expected {name} in {str(path)!r}; it is missing")
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{_where(path, name)} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{_where(path, name)} must hold a JSON object; got {type(obj).__name__}")
    return obj


def _read_safetensors(path: Path, name: str) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"expected {name} in {str(path)!r}; it is missing")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{str(file)!r} is not a readable safetensors file (truncated, or not "
            f"safetensors at all): {exc}"
        ) from None


def _folder(src: str | os.PathLike[str], what: str) -> Path:
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"{what} folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} checkpoint must be a folder; got the file {str(path)!r}")
    return path


def _need(tensors: dict[str, Tensor], names: tuple[str, ...], where: str) -> None:
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)} (found {', '.join(sorted(tensors))})")


def _f32(t: Tensor) -> Tensor:
    return t.detach().to("cpu", torch.float32).contiguous()


def _int_k(value: Any, where: str) -> int:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{where}: k must be an int; got {value!r}")
    return int(value)


def check_weights(w: SAEWeights, where: str = "the checkpoint") -> SAEWeights:
    """Check shapes, finiteness and k; return `w` with float32 contiguous tensors."""
    if w.arch not in _ARCHS:
        raise ValueError(f"{where}: arch must be one of {', '.join(_ARCHS)}; got {w.arch!r}")
    if w.W_dec.ndim != 2:
        raise ValueError(f"{where}: W_dec must be 2-D [d_sae, d_in]; got {tuple(w.W_dec.shape)}")
    d_sae, d_out = w.W_dec.shape
    transcoder = w.arch in _TRANSCODERS
    if transcoder and w.W_enc.ndim != 2:
        raise ValueError(f"{where}: W_enc must be 2-D [d_in, d_sae]; got {tuple(w.W_enc.shape)}")
    d_in = int(w.W_enc.shape[0]) if transcoder else d_out
    expected = {
        "W_enc": (d_in, d_sae),
        "b_enc": (d_sae,),
        "b_dec": (d_out,),
    }
    got = {"W_enc": w.W_enc, "b_enc": w.b_enc, "b_dec": w.b_dec}
    if w.arch == "skip-transcoder":
        if w.W_skip is None:
            raise ValueError(f"{where}: arch 'skip-transcoder' needs W_skip; none found")
        expected["W_skip"] = (d_in, d_out)
        got["W_skip"] = w.W_skip
    elif w.W_skip is not None:
        raise ValueError(f"{where}: W_skip applies to skip-transcoder only; got arch {w.arch!r}")
    if w.threshold is not None:
        expected["threshold"] = (d_sae,)
        got["threshold"] = w.threshold
    for name, shape in expected.items():
        if tuple(got[name].shape) != shape:
            raise ValueError(
                f"{where}: {name} has shape {tuple(got[name].shape)}, expected {shape} "
                f"for d_in={d_in}, d_sae={d_sae}" + (f", d_out={d_out}" if transcoder else "")
            )
    for name, t in {**got, "W_dec": w.W_dec}.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{where}: {name} contains NaN or Inf")
    if w.arch in ("topk", "batchtopk", *_TRANSCODERS) and (w.k is None or not 1 <= w.k <= d_sae):
        raise ValueError(f"{where}: k must be in [1, d_sae={d_sae}]; got {w.k}")
    if w.arch in ("jumprelu", "batchtopk") and w.threshold is None:
        raise ValueError(f"{where}: arch {w.arch!r} needs a threshold; none found")
    return w._replace(
        W_enc=_f32(w.W_enc),
        b_enc=_f32(w.b_enc),
        W_dec=_f32(w.W_dec),
        b_dec=_f32(w.b_dec),
        threshold=None if w.threshold is None else _f32(w.threshold),
        W_skip=None if w.W_skip is None else _f32(w.W_skip),
    )


# ---- SAELens ------------------------------------------------------------------------------

_SAELENS_ARCHS = {
    "standard": "relu",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "batchtopk": "batchtopk",
}


def read_saelens(src: str | os.PathLike[str]) -> SAEWeights:
    """Read a SAELens folder (`cfg.json` + `sae_weights.safetensors`)."""
    path = _folder(src, "SAELens")
    cfg = _read_json(path, SAELENS_CONFIG)
    tensors = _read_safetensors(path, SAELENS_WEIGHTS)
    where = str(path)
    arch_name = str(cfg.get("architecture", "standard"))
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    k: int | None = None
    if arch_name == "standard" and activation == "topk":
        # SAELens < 6 wrote TopK SAEs as "standard" with a topk activation function
        arch_name = "topk"
        k = _int_k((cfg.get("activation_fn_kwargs") or {}).get("k"), f"{where} cfg.json")
    elif arch_name == "standard" and activation not in ("relu", None):
        raise ValueError(f"{where}: activation_fn {activation!r} is not supported (relu, topk)")
    if arch_name not in _SAELENS_ARCHS:
        raise ValueError(
            f"{where}: SAELens architecture {arch_name!r} cannot be imported; "
            f"supported: {', '.join(_SAELENS_ARCHS)}"
        )
    arch = _SAELENS_ARCHS[arch_name]
    if arch in ("topk", "batchtopk") and k is None:
        k = _int_k(cfg.get("k"), f"{where} cfg.json")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm == "expected_average_only_in":
        # SAELens applies no run-time normalisation for this setting at inference: the
        # factor was folded into the weights when training ended.
        logger.warning("%s: normalize_activations=%r is a no-op at inference", where, norm)
    elif norm != "none":
        raise ValueError(
            f"{where}: normalize_activations={norm!r} normalises each input at run time, "
            "which a polysemy SAE cannot represent; only 'none' (or "
            "'expected_average_only_in', already folded) can be imported"
        )
    if cfg.get("finetuning_scaling_factor"):
        raise ValueError(f"{where}: finetuning_scaling_factor=true cannot be imported")
    _need(tensors, ("W_enc", "W_dec", "b_dec"), f"{where}/{SAELENS_WEIGHTS}")
    W_enc = tensors["W_enc"].to(torch.float64)
    W_dec = tensors["W_dec"].to(torch.float64)
    b_dec = tensors["b_dec"].to(torch.float64)
    d_sae = W_dec.shape[0]
    b_enc = tensors.get("b_enc", torch.zeros(d_sae)).to(torch.float64)
    for key in ("d_in", "d_sae"):
        want = cfg.get(key)
        have = W_dec.shape[1] if key == "d_in" else W_dec.shape[0]
        if want is not None and int(want) != have:
            raise ValueError(f"{where}: cfg.json says {key}={want} but W_dec has {key}={have}")
    if "scaling_factor" in tensors:
        W_dec = W_dec * tensors["scaling_factor"].to(torch.float64).unsqueeze(1)
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + b_dec @ W_enc
    threshold: Tensor | None = None
    if arch == "jumprelu":
        _need(tensors, ("threshold",), f"{where}/{SAELENS_WEIGHTS}")
        # SAELens computes relu(h) * (h > t): a negative t acts as t = 0
        threshold = tensors["threshold"].to(torch.float64).clamp_min(0.0)
    elif arch == "batchtopk":
        _need(tensors, ("topk_threshold",), f"{where}/{SAELENS_WEIGHTS}")
        threshold = tensors["topk_threshold"].to(torch.float64).clamp_min(0.0).expand(d_sae)
    if arch in ("topk", "batchtopk") and cfg.get("rescale_acts_by_decoder_norm", False):
        norms = W_dec.norm(dim=1).clamp_min(1e-12)  # [d_sae]
        W_enc = W_enc * norms
        b_enc = b_enc * norms
        W_dec = W_dec / norms.unsqueeze(1)
    metadata = cfg.get("metadata") or {}
    source = {
        "imported_from": "saelens",
        "path": str(path),
        "model": metadata.get("model_name", cfg.get("model_name")),
        "site": metadata.get("hook_name", cfg.get("hook_name")),
    }
    if cfg.get("reshape_activations") == "hook_z":
        source["note"] = "hook_z SAE: reads attention outputs flattened to n_heads * d_head"
    weights = SAEWeights(arch, W_enc, b_enc, W_dec, b_dec, threshold, k, source)
    return check_weights(weights, where)


def write_saelens(weights: SAEWeights, out: str | os.PathLike[str]) -> Path:
    """Write `weights` as a SAELens folder, atomically; return the folder."""
    w = check_weights(weights)
    if w.arch in _TRANSCODERS:
        raise ValueError(
            f"arch {w.arch!r} has no SAELens equivalent: SAELens transcoders are ReLU or "
            "JumpReLU, which cannot compute a TopK code (export it to sparsify instead)"
        )
    arch_name = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}.get(w.arch)
    tensors = {"W_enc": w.W_enc, "b_enc": w.b_enc, "W_dec": w.W_dec, "b_dec": w.b_dec}
    if w.arch == "batchtopk":
        # SAELens itself saves a trained BatchTopK SAE as JumpReLU with the learned threshold
        arch_name = "jumprelu"
    if arch_name is None:
        raise ValueError(f"arch {w.arch!r} has no SAELens equivalent")
    if arch_name == "jumprelu":
        assert w.threshold is not None  # check_weights guarantees it
        if bool((w.threshold < 0).any()):
            # SAELens computes relu(h) * (h > t): it cannot emit the negative latents that
            # h * (h > t) gives for t < h < 0
            raise ValueError(
                "a negative JumpReLU threshold has no SAELens equivalent; "
                f"got min threshold {float(w.threshold.min()):.4g}"
            )
        tensors["threshold"] = w.threshold
    cfg: dict[str, Any] = {
        "architecture": arch_name,
        "d_in": w.d_in,
        "d_sae": w.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": _SAELENS_LAYOUT_VERSION,
            "model_name": w.source.get("model"),
            "hook_name": w.source.get("site"),
            "exported_by": "polysemy",
        },
    }
    if arch_name == "topk":
        cfg["k"] = w.k
        cfg["rescale_acts_by_decoder_norm"] = False
    with atomic_folder(out) as tmp:
        atomic_save_safetensors(tmp / SAELENS_WEIGHTS, tensors)
        atomic_write_json(tmp / SAELENS_CONFIG, cfg)
    return Path(out)


# ---- sparsify -----------------------------------------------------------------------------


def read_sparsify(src: str | os.PathLike[str]) -> SAEWeights:
    """Read a sparsify folder (`cfg.json` + `sae.safetensors`, one hookpoint)."""
    path = _folder(src, "sparsify")
    cfg = _read_json(path, SPARSIFY_CONFIG)
    where = str(path)
    # multi_topk changes only the training loss, so it needs no translation
    transcode = bool(cfg.get("transcode"))
    if cfg.get("skip_connection") and not transcode:
        raise ValueError(f"{where}: sparsify skip_connection=true cannot be imported as an SAE")
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise ValueError(f"{where}: sparsify activation {activation!r} is not supported (topk)")
    tensors = _read_safetensors(path, SPARSIFY_WEIGHTS)
    _need(tensors, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), f"{where}/sae.safetensors")
    if "W_skip" in tensors and not transcode:
        raise ValueError(f"{where}: a skip connection (W_skip) cannot be imported")
    arch = "topk"
    W_skip = None
    if transcode:
        # sparsify's transcoder encodes x without subtracting b_dec, as ours does, and adds
        # x @ W_skip.mT with W_skip [d_out, d_in]
        arch = "skip-transcoder" if "W_skip" in tensors else "transcoder"
        W_skip = tensors["W_skip"].T if "W_skip" in tensors else None
    d_in = cfg.get("d_in")
    if d_in is not None and int(d_in) != tensors["b_dec"].shape[0]:
        raise ValueError(
            f"{where}: cfg.json says d_in={d_in} but b_dec has {tensors['b_dec'].shape[0]}"
        )
    k = _int_k(cfg.get("k", 32), f"{where} cfg.json")
    weights = SAEWeights(
        arch=arch,
        # sparsify's encoder is an nn.Linear: weight [d_sae, d_in]; it subtracts b_dec first
        W_enc=tensors["encoder.weight"].T,
        b_enc=tensors["encoder.bias"],
        W_dec=tensors["W_dec"],
        b_dec=tensors["b_dec"],
        threshold=None,
        k=k,
        source={"imported_from": "sparsify", "path": str(path), "site": path.name},
        W_skip=W_skip,
    )
    return check_weights(weights, where)


def write_sparsify(weights: SAEWeights, out: str | os.PathLike[str]) -> Path:
    """Write `weights` (a TopK SAE) as a sparsify folder, atomically; return the folder."""
    w = check_weights(weights)
    transcoder = w.arch in _TRANSCODERS
    if w.arch != "topk" and not transcoder:
        raise ValueError(
            f"sparsify holds only TopK SAEs with a per-row k; got arch {w.arch!r} "
            "(export it to saelens instead)"
        )
    if transcoder and w.d_out != w.d_in:
        raise ValueError(
            f"sparsify transcoders predict a site as wide as their input (one d_in); got "
            f"d_in={w.d_in}, d_out={w.d_out}"
        )
    unit_rows = bool(torch.allclose(w.W_dec.norm(dim=1), torch.ones(w.d_sae), atol=1e-4))
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, w.d_sae // w.d_in),
        "normalize_decoder": unit_rows,
        "num_latents": w.d_sae,
        "k": w.k,
        "multi_topk": False,
        "skip_connection": w.arch == "skip-transcoder",
        "transcode": transcoder,
        "d_in": w.d_in,
    }
    tensors = {
        "encoder.weight": w.W_enc.T,  # made contiguous by atomic_save_safetensors
        "encoder.bias": w.b_enc,
        "W_dec": w.W_dec,
        "b_dec": w.b_dec,
    }
    if w.W_skip is not None:
        tensors["W_skip"] = w.W_skip.T  # sparsify adds x @ W_skip.mT: [d_out, d_in]
    with atomic_folder(out) as tmp:
        atomic_save_safetensors(tmp / SPARSIFY_WEIGHTS, tensors)
        atomic_write_json(tmp / SPARSIFY_CONFIG, cfg)
    return Path(out)


# ---- dictionary_learning ------------------------------------------------------------------


def read_dictionary_learning(src: str | os.PathLike[str]) -> SAEWeights:
    """Read a dictionary_learning `ae.pt` (a file, or a folder holding `ae.pt` and maybe the
    trainer's `config.json`), with `torch.load(weights_only=True)` only.

    Handles `AutoEncoder`, `AutoEncoderNew`, `AutoEncoderTopK`, `BatchTopKSAE` and
    `JumpReluAutoEncoder` state dicts; refuses gated and other layouts.
    """
    path = Path(src)
    file = path / DICTIONARY_LEARNING_WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"expected a dictionary_learning ae.pt file or a folder holding one; "
            f"found nothing at {str(file)!r}"
        )
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals come as several exception types
        raise ValueError(
            f"{str(file)!r} is not a state dict of tensors that can be read safely "
            f"(torch.load with weights_only=True refused it): {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{str(file)!r} does not hold a state dict of tensors")
    dict_class = None
    config_file = file.parent / "config.json"
    if config_file.is_file():
        try:
            trainer = json.loads(config_file.read_text(encoding="utf-8")).get("trainer", {})
            dict_class = trainer.get("dict_class")
        except (ValueError, AttributeError, UnicodeDecodeError):
            logger.warning("ignoring unreadable %s", config_file)
    where = str(file)
    keys = set(state)
    source: dict[str, Any] = {"imported_from": "dictionary_learning", "path": str(file)}
    if dict_class:
        source["dict_class"] = dict_class
    if {"r_mag", "gate_bias", "mag_bias"} & keys:
        raise ValueError(f"{where}: gated autoencoders cannot be imported")
    threshold: Tensor | None
    if "W_enc" in keys:  # JumpReluAutoEncoder: x @ W_enc + b_enc, no b_dec subtraction
        _need(state, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), where)
        W_enc, b_dec = state["W_enc"].double(), state["b_dec"].double()
        # its latents are scaled by ||W_dec_j|| and unscaled before decoding: same x_hat
        weights = SAEWeights(
            "jumprelu",
            W_enc,
            state["b_enc"].double() + b_dec @ W_enc,
            state["W_dec"],
            b_dec,
            state["threshold"].double().clamp_min(0.0),
            None,
            source,
        )
    elif "k" in keys:  # AutoEncoderTopK or BatchTopKSAE
        _need(state, ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec"), where)
        k = _int_k(state["k"], where)
        d_sae = state["encoder.weight"].shape[0]
        batch = dict_class is not None and "batch" in str(dict_class).lower()
        threshold = None
        if batch:
            thr = float(state.get("threshold", torch.tensor(-1.0)).item())
            if thr < 0:
                raise ValueError(f"{where}: BatchTopKSAE has no learned threshold yet ({thr})")
            threshold = torch.full((d_sae,), thr)
        weights = SAEWeights(
            "batchtopk" if batch else "topk",
            state["encoder.weight"].T,
            state["encoder.bias"],
            state["decoder.weight"].T,  # nn.Linear(d_sae, d_in).weight is [d_in, d_sae]
            state["b_dec"],
            threshold,
            k,
            source,
        )
    elif {"encoder.weight", "encoder.bias", "decoder.weight", "bias"} <= keys:  # AutoEncoder
        weights = SAEWeights(
            "relu",
            state["encoder.weight"].T,
            state["encoder.bias"],
            state["decoder.weight"].T,
            state["bias"],
            None,
            None,
            source,
        )
    elif {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"} <= keys:
        # AutoEncoderNew: relu(x W_e + b_e) W_d + b_d, no bias subtracted before encoding
        W_enc, b_dec = state["encoder.weight"].T.double(), state["decoder.bias"].double()
        weights = SAEWeights(
            "relu",
            W_enc,
            state["encoder.bias"].double() + b_dec @ W_enc,
            state["decoder.weight"].T,
            b_dec,
            None,
            None,
            source,
        )
    else:
        raise ValueError(
            f"{where}: unrecognised dictionary_learning state dict (keys {sorted(keys)}); "
            "supported: AutoEncoder, AutoEncoderNew, AutoEncoderTopK, BatchTopKSAE, "
            "JumpReluAutoEncoder"
        )
    return check_weights(weights, where)


# ---- to and from polysemy SAEs ------------------------------------------------------------

_READERS = {
    "saelens": read_saelens,
    "sparsify": read_sparsify,
    "dictionary_learning": read_dictionary_learning,
}
_WRITERS = {"saelens": write_saelens, "sparsify": write_sparsify}


def read_foreign(fmt: str, src: str | os.PathLike[str]) -> SAEWeights:
    """Read a foreign checkpoint of format `fmt` (one of `IMPORT_FORMATS`)."""
    if fmt not in _READERS:
        raise ValueError(f"format must be one of {', '.join(IMPORT_FORMATS)}; got {fmt!r}")
    return _READERS[fmt](src)


def write_foreign(fmt: str, weights: SAEWeights, out: str | os.PathLike[str]) -> Path:
    """Write `weights` in format `fmt` (one of `EXPORT_FORMATS`) to the folder `out`."""
    if fmt not in _WRITERS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
    return _WRITERS[fmt](weights, out)


def weights_of(sae: Any) -> SAEWeights:
    """The `SAEWeights` of a polysemy `SparseAutoencoder` (original units, inference rule)."""
    config = getattr(sae, "config", None)
    arch = getattr(config, "arch", None)
    if arch is None:
        raise TypeError(f"expected a polysemy SparseAutoencoder; got {type(sae).__name__}")
    threshold = getattr(sae, "threshold", None)
    # load_sae keeps the checkpoint's config.json as `.metadata`; its "source" names the
    # model and site, which foreign formats record too
    metadata = getattr(sae, "metadata", None)
    source = dict(metadata.get("source") or {}) if isinstance(metadata, dict) else {}
    return check_weights(
        SAEWeights(
            arch=str(arch),
            W_enc=sae.W_enc,
            b_enc=sae.b_enc,
            W_dec=sae.W_dec,
            b_dec=sae.b_dec,
            threshold=threshold if arch in ("jumprelu", "batchtopk") else None,
            k=getattr(config, "k", None),
            source=source,
            W_skip=getattr(sae, "W_skip", None) if arch == "skip-transcoder" else None,
        )
    )


def to_sae(weights: SAEWeights, *, device: str | torch.device = "cpu") -> Any:
    """Build an inference-ready polysemy `SparseAutoencoder` from `weights`."""
    from polysemy.sae import sae_from_weights

    w = check_weights(weights)
    return sae_from_weights(
        w.arch,
        W_enc=w.W_enc,
        b_enc=w.b_enc,
        W_dec=w.W_dec,
        b_dec=w.b_dec,
        threshold=w.threshold,
        k=w.k,
        W_skip=w.W_skip,
        device=device,
    )


def import_sae(fmt: str, src: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Any:
    """Read a foreign checkpoint and return it as a polysemy `SparseAutoencoder`."""
    return to_sae(read_foreign(fmt, src), device=device)


def export_sae(sae: Any, fmt: str, out: str | os.PathLike[str]) -> Path:
    """Write a polysemy `SparseAutoencoder` (or `SAEWeights`) as a `fmt` folder at `out`."""
    weights = sae if isinstance(sae, SAEWeights) else weights_of(sae)
    return write_foreign(fmt, weights, out)
