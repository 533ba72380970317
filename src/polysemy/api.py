"""The notebook layer: the pipeline in keyword arguments, one call per step.

Each function here builds the frozen configs of the library from keyword arguments (any field
of the config, with the config's own defaults), reads what it can from the data (the width
`d_in`, the corpus name), calls the library function that does the work, and returns objects
to keep working with: a harvest returns its store, a training run its SAE.

>>> import polysemy as ps
>>> model = ps.load_model("minilm")                                           # doctest: +SKIP
>>> store = ps.harvest(model, "pydocs", site="encoder.layer.3.output",
...                    tokens=50_000, out="acts/l3")                          # doctest: +SKIP
>>> run = ps.train_sae(store, arch="topk", expansion=4, k=16, tokens=500_000,
...                    out="saes/l3")                                         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from polysemy.activations.store import ActivationStore
from polysemy.validation import ParameterError

if TYPE_CHECKING:
    from polysemy.models.loading import LoadedModel
    from polysemy.sae.trainer import TrainResult

PathLike = str | os.PathLike[str]


def _split_options(options: dict[str, Any], *configs: type) -> list[dict[str, Any]]:
    """Deal keyword `options` out to the configs whose field they name; refuse the rest."""
    parts: list[dict[str, Any]] = [{} for _ in configs]
    for key, value in options.items():
        for part, config in zip(parts, configs, strict=True):
            if key in {f.name for f in dataclasses.fields(config)}:
                part[key] = value
                break
        else:
            names = sorted({f.name for c in configs for f in dataclasses.fields(c)})
            raise ParameterError(key, f"a field of {'/'.join(c.__name__ for c in configs)} "
                                 f"({', '.join(names)})", options[key])  # fmt: skip
    return parts


def harvest(
    model: LoadedModel | str,
    corpus: Iterable[str] | str,
    *,
    out: PathLike,
    site: str | None = None,
    sites: Sequence[str] | None = None,
    resume: bool = False,
    force: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **options: Any,
) -> ActivationStore | dict[str, ActivationStore]:
    """Run `corpus` through `model` and store the activations of `site` (or of each of
    `sites`, from one forward pass) under `out`.

    `model` is a loaded model or a name for `load_model` (on `device`); `corpus` a `Corpus`,
    any iterable of texts, or a spec for `open_corpus` (with `seed`). `options` are fields of
    `HarvestConfig` (`tokens` is required; `seq_len`, `batch_size`, `dtype`, ...). Returns the
    store for `site=`, or a mapping site -> store for `sites=` (stores in `out/<site>/`).
    Under torchrun every process calls it alike and gets the whole store (docs/scale.md).
    """
    from polysemy.activations.harvest import HarvestConfig, store_paths
    from polysemy.activations.harvest import harvest as harvest_sites
    from polysemy.corpora import open_corpus
    from polysemy.models import load_model

    if (site is None) == (sites is None):
        raise ParameterError("site", "given, or else sites (one of the two)", site)
    names = (site,) if site is not None else sites
    (config_options,) = _split_options(options, HarvestConfig)
    config = HarvestConfig(sites=names, **config_options)  # type: ignore[arg-type]
    if isinstance(model, str):
        from polysemy.sae.distributed import init_from_env, rank_device

        # Under torchrun each rank loads the model on its own GPU (cuda -> cuda:<local rank>).
        loaded = load_model(model, device=rank_device(device, init_from_env(device)))
    else:
        loaded = model
    documents = open_corpus(corpus, seed=seed) if isinstance(corpus, str) else corpus
    paths = store_paths(out, config.sites)
    harvest_sites(
        loaded, documents, config, out=paths, resume=resume, force=force, progress=progress
    )
    stores = {name: ActivationStore(path) for name, path in paths.items()}
    return stores[site] if site is not None else stores


def train_sae(
    acts: ActivationStore | Tensor | PathLike,
    *,
    target: ActivationStore | Tensor | PathLike | None = None,
    out: PathLike | None = None,
    expansion: float | None = None,
    resume: bool = False,
    force: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **options: Any,
) -> TrainResult:
    """Train an SAE on `acts` (a store, its folder, or a 2-D tensor) and save it to `out`.

    `options` are fields of `SAEConfig` (`arch`, `k`, `d_sae`, ...) and of `TrainConfig`
    (`tokens`, `batch_size`, `optimizer`, `lr`, `seed`, ...); `d_in` is read from the data
    and `d_sae` defaults to `expansion` x `d_in` (see `sae.config.resolve_d_sae`). Returns
    the `TrainResult`, whose `sae` is the trained model as saved.

    Transcoders (`arch="transcoder"` or `"skip-transcoder"`) predict `target` (a store,
    folder or tensor with the same rows, e.g. the MLP's output harvested with its input);
    `d_out` is read from it: `ps.train_sae(mlp_in, target=mlp_out, arch="transcoder", k=32)`.
    """
    from polysemy.sae.config import TRANSCODERS, SAEConfig, TrainConfig, resolve_d_sae
    from polysemy.sae.trainer import train_sae as train

    if isinstance(acts, str | os.PathLike):
        acts = ActivationStore(acts)
    d_in = int(acts.shape[1]) if isinstance(acts, Tensor) else acts.d_in
    sae_options, train_options = _split_options(options, SAEConfig, TrainConfig)
    if "d_in" in sae_options:
        raise ParameterError("d_in", "left out (it is read from the activations)", d_in)
    sae_options["d_sae"] = resolve_d_sae(d_in, expansion=expansion, d_sae=sae_options.get("d_sae"))
    if target is not None:
        if isinstance(target, str | os.PathLike):
            target = ActivationStore(target)
        if "d_out" in sae_options:
            raise ParameterError("d_out", "left out (it is read from the target)", None)
        if sae_options.get("arch") in TRANSCODERS:  # else the trainer names the mistake
            sae_options["d_out"] = (
                int(target.shape[1]) if isinstance(target, Tensor) else target.d_in
            )
    config = SAEConfig(d_in=d_in, **sae_options)
    return train(
        acts,
        config,
        TrainConfig(**train_options),
        target=target,
        out=out,
        resume=resume,
        force=force,
        device=device,
        progress=progress,
    )


def synth(out: PathLike, *, progress: bool = True, **options: Any) -> ActivationStore:
    """Write a store of planted-dictionary activations to `out` and return it; `options` are
    fields of `SynthConfig` (`n_features`, `d_in`, `active`, `tokens`, `seed`, ...). The
    planted features are in `store.truth()`."""
    from polysemy.synth.planted import SynthConfig, write_synth_store

    (config_options,) = _split_options(options, SynthConfig)
    result = write_synth_store(out, SynthConfig(**config_options), progress=progress)
    return ActivationStore(Path(result.path))
