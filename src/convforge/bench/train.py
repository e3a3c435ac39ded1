"""bench train: the plain PyTorch loop vs convforge on the same recipe vs convforge's fast recipe, one GPU.

The plain loop is written the way a typical user writes it: a TensorDataset of float images (decoded once, so the
plain loop pays no JPEG decoding: a conservative baseline) and a DataLoader with shuffle, model.train(), and a
`.item()` per step for the running loss. Same model (the same spec), solver, batch size, epochs and seed stream
as convforge's run of that recipe. Times: `train_s` is the training loop alone (no data loading, no test pass);
`total_s` is the whole call (for convforge: load/decode, training, test pass, Run writes).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# The reference recipes (the reports' settings); `source` is resolved against data_dir by the caller.
REFERENCE = {
    "fashion-mlp": dict(source="fashion-mnist", model="mlp", solver="adam", batch_size=32, epochs=10),
    "mnist-digits-cnn": dict(source="mnist", model="digits-cnn", solver="sgdm", lr=0.01, batch_size=128, epochs=4),
    "cifar-simple-cnn": dict(source="cifar", model="simple-cnn", solver="adam", batch_size=32, epochs=10),
}
FAST = {"fashion-mlp": "fashion-mnist-fast", "mnist-digits-cnn": "mnist-fast", "cifar-simple-cnn": "cifar10-fast"}
SPLIT = {"mnist": (1.0, 0.0, 0.0), "fashion-mnist": (1.0, 0.0, 0.0), "cifar": (0.8, 0.0, 0.2)}


def _peak_reset() -> None:
    gc.collect()  # the previous run's trainer (and its CUDA graph pool) must not count in this run's peak
    if torch.cuda.is_available():
        # cuBLAS keeps a workspace per stream it ran on (32 MiB each on Hopper), live allocations that outlast the
        # run that made them: without this, every run after the first counted earlier runs' workspaces as its own
        getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)()
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def _mark(probe: dict[str, Any] | None, stage: str, peak: bool = False) -> None:
    """Record allocated (or peak) GPU MiB at a stage, for benchmarks/step_profile.py; nothing when probe is None."""
    if probe is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        probe[stage] = round((torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()) / 2**20, 1)


def plain_loop(recipe: dict[str, Any], splits, seed: int, device: str = "cuda", epochs: int | None = None,
               probe: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The typical eager loop: DataLoader, .to(device) per batch, .item() per step.

    `epochs` overrides the recipe's; `probe` receives the allocated/peak MiB at each stage (step_profile.py).
    """
    from torch.utils.data import DataLoader, TensorDataset

    from ..engine.solvers import make_optimizer
    from ..models import build_model, resolve_spec

    torch.manual_seed(seed)
    train, test = splits.train, splits.test
    spec = resolve_spec(recipe["model"], in_shape=tuple(train.images.shape[1:]), num_classes=len(splits.classes))
    model = build_model(spec).to(device)
    opt = make_optimizer(recipe["solver"], model.parameters(), recipe.get("lr"))  # not fused: PyTorch's default
    data = TensorDataset(train.images.float() / 255, train.labels)
    loader = DataLoader(data, batch_size=recipe["batch_size"], shuffle=True)
    binary = spec.output == "sigmoid"
    _peak_reset()
    _mark(probe, "model_mib")
    t0 = time.perf_counter()
    for _ in range(recipe["epochs"] if epochs is None else epochs):
        model.train()
        running = 0.0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = F.binary_cross_entropy_with_logits(out[:, 0], y.float()) if binary else F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()  # host sync every step, as typical logging does
    train_s = time.perf_counter() - t0
    _mark(probe, "train_peak_mib", peak=True)
    _mark(probe, "after_train_mib")
    model.eval()
    with torch.no_grad():
        x = test.images.float().div(255).to(device)
        logits = torch.cat([model(c) for c in x.split(1000)])
        pred = (logits[:, 0] > 0).long() if binary else logits.argmax(1)
        acc = (pred.cpu() == test.labels).float().mean().item()
    _mark(probe, "run_peak_mib", peak=True)  # the evaluation's peak, when above the training peak
    return dict(train_s=train_s, total_s=train_s, acc=acc, peak_mib=_peak_mib(), images=len(train.labels))


def convforge_run(source: str, seed: int, options: dict[str, Any], recipe: str | None = None) -> dict[str, Any]:
    from .. import api

    _peak_reset()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = api.train(source, recipe=recipe, seed=seed, out=f"{tmp}/run", progress=False, log=lambda s: None,
                      **options)  # fmt: skip
    total_s = time.perf_counter() - t0
    train_s = sum(row["time_s"] for row in r.history)
    images = sum(row["images_per_s"] * row["time_s"] for row in r.history)
    return dict(train_s=train_s, total_s=total_s, acc=r.test_accuracy, peak_mib=_peak_mib(), images=images)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return dict(mean=statistics.fmean(vals), sd=statistics.pstdev(vals), min=min(vals)) if vals else None

    out = {k: stat(k) for k in ("train_s", "total_s", "acc", "peak_mib")}
    out["images_per_s"] = statistics.fmean(r["images"] / r["train_s"] for r in rows)
    out["runs"] = len(rows)
    return out


def _runs(n: int, fn: Callable[[int], dict[str, Any]], label: str, log: Callable[[str], None]) -> list[dict]:
    rows = []
    for seed in range(n):
        try:
            rows.append(fn(seed))
        except Exception as err:  # one broken variant must not lose the others' numbers (GPU time is scarce)
            log(f"{label} seed {seed}: FAILED {type(err).__name__}: {err}")
            break
        log(f"{label} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()))
    return rows


def bench_recipe(name: str, source: str, seeds: int, baseline_seeds: int, log: Callable[[str], None],
                 eager_seeds: int | None = None, variants: dict[str, dict] | None = None) -> dict:  # fmt: skip
    """`variants`: extra runs of the fast recipe with overrides, e.g. {"fast ep6": {"epochs": 6}}, or of the
    reference recipe with "same_recipe": true, e.g. {"convforge compile": {"same_recipe": true, "compile": true}}."""
    from ..data import DataConfig, load_data

    ref = REFERENCE[name]
    split = SPLIT[ref["source"]]
    options = {k: v for k, v in ref.items() if k != "source"}
    options.update(split=split, schedule="constant", rescale="unit")  # the plain loop: constant lr, x/255
    result: dict[str, Any] = {"recipe": ref, "source": source}
    splits = load_data(DataConfig(source=source, split=split), progress=False)
    eager_n = min(seeds, 1) if eager_seeds is None else eager_seeds
    runs = {
        "plain": (baseline_seeds, lambda s: plain_loop(ref, splits, s)),
        "convforge": (seeds, lambda s: convforge_run(source, s, options)),
        "convforge-eager": (eager_n, lambda s: convforge_run(source, s, {**options, "cuda_graphs": False})),
        "fast": (seeds, lambda s: convforge_run(source, s, {}, recipe=FAST[name])),
    }
    for label, over in (variants or {}).items():
        over = dict(over)
        if over.pop("same_recipe", False):  # the reference recipe with options changed, e.g. {"compile": true}
            runs[label] = (seeds, lambda s, over=over: convforge_run(source, s, {**options, **over}))
        else:
            runs[label] = (seeds, lambda s, over=over: convforge_run(source, s, over, recipe=FAST[name]))
    for variant, (n, fn) in runs.items():
        rows = _runs(n, fn, f"{name} {variant}", log)
        over = (variants or {}).get(variant)
        result[variant] = {"runs": rows, "summary": _summary(rows), "options": over} if rows else None
    return result


def bench_folder(source: str, seeds: int, log: Callable[[str], None], split=(0.7692, 0.0, 0.2308)) -> dict:
    """The folder fast recipe, each seed decoding afresh (its own cache folder): wall time includes decoding."""
    rows = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as cache:
            rows.append(convforge_run(source, seed, {"split": split, "cache_dir": cache}, recipe="folder-fast"))
        log(f"folder fast seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()))
    return {"source": source, "split": split, "fast": {"runs": rows, "summary": _summary(rows)}}


def environment() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return dict(
        device=torch.cuda.get_device_name() if cuda else "cpu",
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"# train_speed: {env['device']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
        f"{env['date']}",
        "",
        f"Wall time {results.get('wall_s', 0):.0f} s. Targets: >= 20x speed-up, same accuracy, peak <= 2x plain's."
        + _seeds_note(results),
        "",
        "| recipe | variant | runs | train s (mean ± sd) | total s | test acc (mean ± sd) | images/s | peak MiB "
        "| peak vs plain | speed-up vs plain (train s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results["recipes"].items():
        plain = (res.get("plain") or {}).get("summary")
        for variant in [k for k in res if isinstance(res[k], dict) and "summary" in res[k]]:
            s = res[variant]["summary"]
            speed = f"{plain['train_s']['mean'] / s['train_s']['mean']:.1f}x" if plain else ""
            memory = (
                f"{s['peak_mib']['mean'] / plain['peak_mib']['mean']:.2f}x"
                if plain and plain["peak_mib"]["mean"]
                else ""
            )
            lines.append(
                f"| {name} | {variant} | {s['runs']} | {s['train_s']['mean']:.2f} ± {s['train_s']['sd']:.2f} "
                f"| {s['total_s']['mean']:.2f} | {s['acc']['mean']:.2%} ± {s['acc']['sd']:.2%} "
                f"| {s['images_per_s']:,.0f} | {s['peak_mib']['mean']:.0f} | {memory} | {speed} |"
            )
    return "\n".join(lines + _per_seed(results)) + "\n"


def _per_seed(results: dict[str, Any]) -> list[str]:
    """The distributions behind the means: every run's test accuracy and training seconds, in seed order."""
    head = ["| recipe | variant | test acc % | train s |", "|---|---|---|---|"]
    lines = ["", "Per run (seed 0, 1, ...): test accuracy %, training s", "", *head]
    for name, res in results["recipes"].items():
        for variant in [k for k in res if isinstance(res[k], dict) and "runs" in res[k]]:
            runs = res[variant]["runs"]
            accs = " / ".join(f"{100 * r['acc']:.2f}" for r in runs if r.get("acc") is not None)
            secs = " / ".join(f"{r['train_s']:.2f}" for r in runs)
            lines.append(f"| {name} | {variant} | {accs} | {secs} |")
    return lines


def _seeds_note(results: dict[str, Any]) -> str:
    seeds, plain = results.get("seeds"), results.get("baseline_seeds")
    if seeds is None or plain is None or plain >= seeds:
        return ""
    return f" The plain loop ran {plain} seed(s), the convforge variants {seeds} (--baseline-seeds)."


def bench_train(sources: dict[str, str], seeds: int = 5, baseline_seeds: int = 5, out: str | Path = ".",
                log: Callable[[str], None] = print, eager_seeds: int | None = None,
                variants: dict[str, dict[str, dict]] | None = None, tag: str = "") -> dict[str, Any]:  # fmt: skip
    """Run each recipe whose source is given (keys of REFERENCE, plus 'folder'); write JSON and markdown."""
    results: dict[str, Any] = {"environment": environment(), "seeds": seeds, "baseline_seeds": baseline_seeds}
    results["recipes"] = {}
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train_speed_{results['environment']['device'].replace(' ', '-')}_{dt.date.today().isoformat()}{tag}"
    for name, source in sources.items():
        if name == "folder":
            results["recipes"]["imagenette-folder"] = bench_folder(source, seeds, log)
        else:
            extra = (variants or {}).get(name)
            results["recipes"][name] = bench_recipe(name, source, seeds, baseline_seeds, log, eager_seeds, extra)
        results["wall_s"] = round(time.perf_counter() - t0, 1)
        (out / f"{stem}.json").write_text(json.dumps(results, indent=1))  # after each recipe: partial results
        (out / f"{stem}.md").write_text(markdown(results))
    log(markdown(results))
    return results


def register_train(bench_app) -> None:
    """Add `convforge bench train` to the bench sub-app (wired by the lead in cli_studies.register)."""
    import typer

    @bench_app.command("train")
    def train_cmd(
        mnist: str = typer.Option("", help="MNIST source (a name or folder); empty = skip"),
        fashion: str = typer.Option("", help="Fashion-MNIST source; empty = skip"),
        cifar: str = typer.Option("", help="CIFAR-10 JPEG folder or archive; empty = skip"),
        folder: str = typer.Option("", help="a photo folder/archive for the folder fast recipe; empty = skip"),
        seeds: int = typer.Option(5, help="runs of each convforge variant"),
        baseline_seeds: int = typer.Option(5, help="runs of the plain PyTorch loop"),
        out: str = typer.Option("benchmarks/results", help="folder for the JSON and markdown"),
    ) -> None:
        """Plain PyTorch loop vs convforge (same recipe) vs fast recipe: time, accuracy, images/s, peak memory."""
        names = {"mnist-digits-cnn": mnist, "fashion-mlp": fashion, "cifar-simple-cnn": cifar, "folder": folder}
        bench_train({k: v for k, v in names.items() if v}, seeds, baseline_seeds, out)
