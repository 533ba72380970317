"""TopK SAE training throughput and held-out FVU: polysemy against the libraries people use.

Same activations, same width and k, same token budget, one process, one machine:

    polysemy  train_sae (Adam; signum and schedule-free signum) -> the library under test
    sparsify  its real Trainer.fit(), driven through a tiny module that replays the stored
              activations at a hookpoint (it cannot take cached activations otherwise)
    SAELens   SAETrainer on a TopKTrainingSAE, fed the pre-computed activations
    plain     a TopK loop written the common way: dense decoder, autograd, Adam
    sklearn   MiniBatchDictionaryLearning on a small subsample (it is far slower; rows/s
              and FVU are reported for that subsample, with OMP at k non-zeros to encode)

Every contender trains on the same pre-shuffled tensor of training rows (so data loading is
outside every timing), and every result is scored by the same code: the trained weights are
converted to polysemy's convention (through `polysemy.sae.interop` for the peers' own saved
folders) and evaluated with `polysemy.analysis.evaluate` on the store's held-out rows.

The "bound" column divides tokens/s by the rate at which this machine can run the encoder
matmul alone ([batch, d_in] x [d_in, d_sae], measured in the same run): no TopK SAE can train
faster than its encoder forward.

Run it from the repository root with the benchmark venv (peers are never polysemy deps):

    make bench-venv
    .venv-bench/bin/python benchmarks/sae_throughput.py --acts acts/minilm-l3

If --acts does not exist it is harvested first (MiniLM `encoder.layer.3.output`, pydocs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch
from torch import Tensor, nn

from polysemy.activations.store import ActivationStore
from polysemy.analysis.reconstruction import evaluate
from polysemy.sae.interop import (
    SAEWeights,
    read_saelens,
    read_sparsify,
    to_sae,
    weights_of,
)

log = logging.getLogger("sae_throughput")


class Run(NamedTuple):
    name: str
    seconds: float
    tokens: int
    weights: SAEWeights | None
    encoder: Any  # object with encode/decode, when weights is None (sklearn)
    note: str


# ---- the contenders ---------------------------------------------------------------------------


def run_polysemy(
    x: Tensor, args: argparse.Namespace, optimizer: str, tokens: int | None = None
) -> Run:
    """`tokens` beyond x's rows start another epoch over them (equal wall-clock runs)."""
    from polysemy.sae import SAEConfig, TrainConfig, train_sae

    lr = args.lr if optimizer == "adam" else args.signum_lr
    config = SAEConfig(arch="topk", d_in=x.shape[1], d_sae=args.d_sae, k=args.k)
    train = TrainConfig(
        tokens=tokens or args.tokens,
        batch_size=args.batch_size,
        lr=lr,
        optimizer=optimizer,
        seed=0,
        selection_dtype=args.selection_dtype,
    )
    start = time.perf_counter()
    result = train_sae(x, config, train)  # also evaluates its saved weights (<= 65,536 rows)
    seconds = time.perf_counter() - start
    return Run(
        f"polysemy ({optimizer})",
        seconds,
        result.tokens,
        weights_of(result.sae),
        None,
        f"lr {lr:.2g}; loop alone {result.tokens_per_s:,.0f} tok/s",
    )


class _Replay(nn.Module):
    """A 'model' whose only layer returns stored activations for the row indices it gets."""

    def __init__(self, acts: Tensor) -> None:
        super().__init__()
        self.acts = acts
        self.site = nn.Identity()

    @property
    def base_model(self) -> nn.Module:
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dummy_inputs(self) -> dict[str, Tensor]:
        return {"input_ids": torch.zeros(1, 4, dtype=torch.long)}

    def forward(self, input_ids: Tensor, **_: Any) -> Tensor:
        return self.site(self.acts[input_ids])  # [batch, seq, d_in]


def run_sparsify(x: Tensor, args: argparse.Namespace, optimizer: str) -> Run:
    from sparsify import SparseCoderConfig, TrainConfig, Trainer

    seq = 128
    assert args.batch_size % seq == 0, "batch size must be a multiple of 128 for sparsify"
    rows = args.tokens // args.batch_size * args.batch_size
    ids = torch.arange(rows).view(-1, seq)
    dataset = [{"input_ids": row} for row in ids]
    steps = rows // args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            SparseCoderConfig(num_latents=args.d_sae, k=args.k),
            batch_size=args.batch_size // seq,
            optimizer=optimizer,
            # its default 1000 warm-up steps would outlast a short benchmark
            lr_warmup_steps=max(1, steps // 100),
            hookpoints=["site"],
            log_to_wandb=False,
            save_every=10**9,
            save_dir=tmp,
        )
        with contextlib.redirect_stdout(sys.stderr):
            start = time.perf_counter()
            trainer = Trainer(cfg, dataset, _Replay(x))  # type: ignore[arg-type]
            trainer.fit()
            seconds = time.perf_counter() - start
        torch.set_float32_matmul_precision("highest")  # fit() lowers it globally
        coder = trainer.saes["site"]
        coder.save_to_disk(Path(tmp) / "export")
        weights = read_sparsify(Path(tmp) / "export")
    return Run(f"sparsify ({optimizer})", seconds, rows, weights, None, "Trainer.fit(), defaults")


def run_saelens(x: Tensor, args: argparse.Namespace) -> Run:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    rows = args.tokens // args.batch_size * args.batch_size
    batches: Iterator[Tensor] = iter(x[:rows].split(args.batch_size))
    with contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=x.shape[1], d_sae=args.d_sae, k=args.k))
        cfg = SAETrainerConfig(
            total_training_samples=rows,
            train_batch_size_samples=args.batch_size,
            lr=args.lr,
            lr_end=args.lr,
            device="cpu",
            logger=LoggingConfig(log_to_wandb=False),
        )
        trainer = SAETrainer(cfg, sae, batches)
        trained = trainer.fit()
        seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        weights = read_saelens(tmp)
    return Run("SAELens", seconds, rows, weights, None, f"SAETrainer, Adam lr {args.lr:.2g}")


def run_plain(x: Tensor, args: argparse.Namespace) -> Run:
    """A TopK SAE as it is commonly written: dense scatter, dense decoder, autograd."""
    g = torch.Generator().manual_seed(0)
    d_in = x.shape[1]
    start = time.perf_counter()
    W_dec = torch.randn(args.d_sae, d_in, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_dec = nn.Parameter(W_dec)
    W_enc = nn.Parameter(W_dec.detach().T.clone())
    b_enc = nn.Parameter(torch.zeros(args.d_sae))
    b_dec = nn.Parameter(x[:16384].mean(0).clone())
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=args.lr)
    rows = 0
    for batch in x.split(args.batch_size):
        if batch.shape[0] < args.batch_size or rows + batch.shape[0] > args.tokens:
            break
        pre = (batch - b_dec) @ W_enc + b_enc
        top = pre.topk(args.k, dim=1)
        z = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
        x_hat = z @ W_dec + b_dec
        loss = (x_hat - batch).pow(2).sum(1).mean() / (batch - batch.mean(0)).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
        rows += batch.shape[0]
    seconds = time.perf_counter() - start
    weights = SAEWeights(
        "topk", W_enc.detach(), b_enc.detach(), W_dec.detach(), b_dec.detach(), None, args.k, {}
    )
    return Run("plain loop (dense)", seconds, rows, weights, None, f"Adam lr {args.lr:.2g}")


class _SklearnCoder:
    """encode/decode over a fitted MiniBatchDictionaryLearning (OMP with k non-zeros)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.W_dec = torch.from_numpy(model.components_).float()

    def encode(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.model.transform(x.double().numpy())).float()

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec


def run_sklearn(x: Tensor, args: argparse.Namespace) -> Run:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    rows = args.sklearn_rows
    model = MiniBatchDictionaryLearning(
        n_components=args.d_sae,
        alpha=1.0,
        batch_size=256,
        max_iter=1,
        transform_algorithm="omp",
        transform_n_nonzero_coefs=args.k,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(x[:rows].double().numpy())
        seconds = time.perf_counter() - start
    return Run(
        "sklearn MiniBatchDictionaryLearning",
        seconds,
        rows,
        None,
        _SklearnCoder(model),
        f"{rows} rows subsample, 1 epoch; OMP k={args.k} to encode",
    )


# ---- measuring ---------------------------------------------------------------------------------


def matmul_bound(d_in: int, d_sae: int, batch: int) -> tuple[float, float]:
    """(GFLOP/s of the encoder matmul on this machine now, tokens/s it alone would allow)."""
    a = torch.randn(batch, d_in)
    w = torch.randn(d_in, d_sae)
    for _ in range(3):
        a @ w
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 3.0:
        a @ w
        n += 1
    seconds = (time.perf_counter() - start) / n
    flops = 2 * batch * d_in * d_sae
    return flops / seconds / 1e9, batch / seconds


def ensure_store(path: Path, tokens: int) -> None:
    if path.exists():
        return
    from polysemy.cli import main

    log.warning("no store at %s: harvesting MiniLM encoder.layer.3.output from pydocs", path)
    rows = math.ceil(tokens / 0.94) + 4096  # 5% held out, plus slack
    argv = ["harvest", "--site", "encoder.layer.3.output", "--corpus", "pydocs"]
    code = main([*argv, "--tokens", str(rows), "--out", str(path)])
    if code != 0:
        raise SystemExit(f"harvest failed with exit code {code}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--acts", default="acts/minilm-l3", help="activation store (harvested if absent)"
    )
    p.add_argument("--tokens", type=int, default=400_000, help="training rows per contender")
    p.add_argument("--d-sae", type=int, default=3072)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate (all Adam runs)")
    p.add_argument(
        "--signum-lr",
        type=float,
        default=None,
        help="polysemy signum learning rate (default: sparsify's, 5e-3 / sqrt(d_sae / 2^14))",
    )
    p.add_argument("--sklearn-rows", type=int, default=1024, help="sklearn training subsample")
    p.add_argument("--eval-rows", type=int, default=None, help="held-out rows scored (all)")
    p.add_argument(
        "--only",
        default="polysemy,polysemy-sf-signum,sparsify,sparsify-adam,saelens,plain,sklearn",
        help="comma list of contenders to run",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="rounds (alternating order); best tok/s is kept"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--selection-dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="polysemy's TopK selection matmul precision (auto: bfloat16 on AMX CPUs)",
    )
    p.add_argument(
        "--equal-wall-clock",
        default=None,
        metavar="PEER",
        help="afterwards, train each polysemy contender for the tokens that fit in PEER's "
        "median training time (e.g. sparsify) and compare held-out FVU and dead latents",
    )
    p.add_argument("--json-out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.signum_lr is None:
        args.signum_lr = 5e-3 / math.sqrt(args.d_sae / 2**14)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")

    store_path = Path(args.acts)
    ensure_store(store_path, args.tokens)
    store = ActivationStore(store_path)
    lo, hi = store.split_range("train")
    if hi - lo < args.tokens:
        raise SystemExit(f"the store's train split has {hi - lo} rows; --tokens is {args.tokens}")
    # one fixed shuffle of the first --tokens training rows, shared by every contender
    x = store.read(lo, lo + args.tokens)
    x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))].contiguous()
    h_lo, h_hi = store.split_range("heldout")
    if args.eval_rows:
        h_hi = min(h_hi, h_lo + args.eval_rows)
    heldout = store.read(h_lo, h_hi)

    contenders: dict[str, Callable[[], Run]] = {
        "polysemy": lambda: run_polysemy(x, args, "adam"),
        "polysemy-signum": lambda: run_polysemy(x, args, "signum"),
        "polysemy-sf-signum": lambda: run_polysemy(x, args, "schedule-free-signum"),
        "sparsify": lambda: run_sparsify(x, args, "signum"),
        "sparsify-adam": lambda: run_sparsify(x, args, "adam"),
        "saelens": lambda: run_saelens(x, args),
        "plain": lambda: run_plain(x, args),
        "sklearn": lambda: run_sklearn(x, args),
    }
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(contenders)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; known: {sorted(contenders)}")

    gflops, bound = matmul_bound(x.shape[1], args.d_sae, args.batch_size)
    print(
        f"# {store.source.get('model', '?')} {store.source.get('site', '?')} "
        f"({store.source.get('corpus', '?')}), d_in {x.shape[1]}, d_sae {args.d_sae}, "
        f"k {args.k}, batch {args.batch_size}, {args.tokens:,} tokens, "
        f"{torch.get_num_threads()} torch threads, held-out rows {heldout.shape[0]:,}, "
        f"{args.repeats} round(s)"
    )
    by_name: dict[str, dict[str, Any]] = {}
    for round_ in range(args.repeats):
        if round_:
            # the machine's load drifts: re-measure the bound, keep the best of the rounds
            gflops, bound = max(
                (gflops, bound), matmul_bound(x.shape[1], args.d_sae, args.batch_size)
            )
        # alternate the order so no contender always runs in the same slot
        for name in wanted if round_ % 2 == 0 else wanted[::-1]:
            if round_ and name == "sklearn":
                continue  # far too slow to repeat
            log.warning("round %d: running %s", round_ + 1, name)
            run = contenders[name]()
            tps = run.tokens / run.seconds
            if name in by_name:
                by_name[name]["tokens_per_s_runs"].append(tps)
                continue
            coder = to_sae(run.weights) if run.weights is not None else run.encoder
            scored = heldout if name != "sklearn" else heldout[: min(1024, heldout.shape[0])]
            metrics = evaluate(coder, scored, batch_size=4096)
            by_name[name] = {
                "name": run.name,
                "tokens": run.tokens,
                "tokens_per_s_runs": [tps],
                "heldout_fvu": metrics.fvu,
                "heldout_l0": metrics.l0,
                "dead_fraction": metrics.dead_fraction,
                "note": run.note,
            }
            print(f"# done {run.name}: {tps:,.0f} tok/s, fvu {metrics.fvu:.4f}", file=sys.stderr)
    print(f"# encoder matmul alone: {gflops:.0f} GFLOP/s -> bound {bound:,.0f} tok/s (best round)")
    results = [by_name[name] for name in wanted]
    for r in results:
        runs = sorted(r["tokens_per_s_runs"])
        r["tokens_per_s"] = runs[-1]
        r["median_tokens_per_s"] = (
            runs[len(runs) // 2]
            if len(runs) % 2
            else sum(runs[len(runs) // 2 - 1 : len(runs) // 2 + 1]) / 2
        )
        r["fraction_of_bound"] = r["tokens_per_s"] / bound

    reference = next((r for r in results if r["name"] == "polysemy (adam)"), results[0])
    print()
    print(
        "| trainer | tok/s (best) | median | per round | x polysemy (adam) | of bound "
        "| held-out FVU | L0 | dead | note |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        per_round = ", ".join(f"{t:,.0f}" for t in r["tokens_per_s_runs"])
        print(
            f"| {r['name']} | {r['tokens_per_s']:,.0f} | {r['median_tokens_per_s']:,.0f} | "
            f"{per_round} | "
            f"{r['tokens_per_s'] / reference['tokens_per_s']:.2f} | "
            f"{r['fraction_of_bound']:.1%} | {r['heldout_fvu']:.4f} | {r['heldout_l0']:.1f} | "
            f"{r['dead_fraction']:.1%} | {r['note']} |"
        )
    ours = {r["name"]: r for r in results}
    for peer in ("sparsify (signum)", "sparsify (adam)", "SAELens", "plain loop (dense)"):
        for mine in ("polysemy (adam)", "polysemy (signum)", "polysemy (schedule-free-signum)"):
            if peer in ours and mine in ours:
                ratio = ours[mine]["tokens_per_s"] / ours[peer]["tokens_per_s"]
                print(f"{mine} / {peer}: {ratio:.2f}x tokens/s")
    matched = equal_wall_clock(x, heldout, args, wanted, by_name)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "bound_tokens_per_s": bound,
                    "gflops": gflops,
                    "results": results,
                    "equal_wall_clock": matched,
                },
                indent=2,
            )
        )
    return 0


def equal_wall_clock(
    x: Tensor,
    heldout: Tensor,
    args: argparse.Namespace,
    wanted: list[str],
    by_name: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Give each polysemy contender the training time the peer took; score both."""
    peer = args.equal_wall_clock
    if peer is None:
        return []
    if peer not in by_name:
        raise SystemExit(f"--equal-wall-clock {peer!r} must be one of the contenders run")
    ref = by_name[peer]
    ref_seconds = ref["tokens"] / ref["median_tokens_per_s"]
    optimizers = {"polysemy": "adam", "polysemy-signum": "signum"}
    optimizers["polysemy-sf-signum"] = "schedule-free-signum"
    rows = [
        {
            "name": ref["name"],
            "tokens": ref["tokens"],
            "seconds": ref_seconds,
            "heldout_fvu": ref["heldout_fvu"],
            "dead_fraction": ref["dead_fraction"],
        }
    ]
    for name in wanted:
        if name not in optimizers or name not in by_name:
            continue
        rate = min(by_name[name]["tokens_per_s_runs"])  # its slowest round: conservative
        tokens = max(1, int(rate * ref_seconds) // args.batch_size) * args.batch_size
        log.warning("equal wall clock: %s for %d tokens", name, tokens)
        run = run_polysemy(x, args, optimizers[name], tokens=tokens)
        metrics = evaluate(to_sae(run.weights), heldout, batch_size=4096)
        rows.append(
            {
                "name": run.name,
                "tokens": run.tokens,
                "seconds": run.seconds,
                "heldout_fvu": metrics.fvu,
                "dead_fraction": metrics.dead_fraction,
            }
        )
    print()
    print(f"Equal wall clock ({ref['name']}'s median training time, {ref_seconds:.1f} s):")
    print("| trainer | tokens | seconds | held-out FVU | dead |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['tokens']:,} | {r['seconds']:.1f} | {r['heldout_fvu']:.4f} | "
            f"{r['dead_fraction']:.1%} |"
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
