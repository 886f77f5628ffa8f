"""How fast are heatdecode's decoders, side by side with what you would use instead?

Times, in one process, interleaved round-robin after a warm-up, the median of
``--repeats`` calls (≥ 20) of:

* floors: one read of the batch (``x.amax`` over the spatial axes) and one
  ``torch.exp(x, out=buf)``;
* every heatdecode decoder (library defaults; ``softargmax`` also at the CLI's
  β=20, minmax);
* peers: ``kornia.geometry.subpix.spatial_soft_argmax2d`` (2D only),
  ``dsntnn.flat_softmax`` + ``dsntnn.dsnt``, the naive meshgrid module most
  people copy (``np.meshgrid`` buffers, softmax over the flattened map,
  ``sum(pos * softmax)`` per axis; wrong on non-square maps), the best
  plain-torch formulations (softmax then per-axis marginals; softmax then
  ``F.linear`` with a ``(d, H·W)`` grid), and ``torch.argmax`` +
  ``torch.unravel_index``;
* with ``--grad``: forward + backward of the differentiable ones (the
  training case).

on float32 Gaussian peaks plus noise, for the workloads 2D pose ``(64, 17,
64, 48)``, 2D large ``(16, 1, 256, 256)``, 3D ``(2, 8, 64, 64, 64)`` and
non-cubic ``(2, 8, 48, 64, 80)``, on CPU and on CUDA when present. Prints a
Markdown table per workload (median ms, maps/s, ratio to each floor, to the
fastest peer doing the same job and to heatdecode's argmax), then one compact
table of all workloads, and writes it all as JSON. ``--rounds N`` repeats the
whole measurement N times and reports each number's median over the rounds.
With ``--memory`` (CPU, Linux) each heatdecode decoder also runs once in a
fresh process that reports its peak resident memory beyond the input's (no
decoder builds an H·W coordinate grid: tests/test_bench.py checks that too);
on CUDA the peak allocated memory is measured in-process.

The machines these run on are shared: compare the rows of one run (ratios),
not one run's milliseconds with another's. Install the peers with
``pip install -e .[bench]``; a missing one is skipped with a note. Run:

    python benchmarks/bench_decoders.py                      # cpu (+ cuda if present)
    python benchmarks/bench_decoders.py --device cpu --threads 2 --rounds 3 --grad --memory
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import heatdecode
from heatdecode.bench import median_ms, synchronizer, synthetic_maps, time_round_robin
from heatdecode.family import DECODERS, decode

WORKLOADS: dict[str, tuple[tuple[int, ...], int]] = {
    "pose": ((64, 17, 64, 48), 2),
    "large": ((16, 1, 256, 256), 2),
    "3d": ((2, 8, 64, 64, 64), 3),
    "3d-noncubic": ((2, 8, 48, 64, 80), 3),
}

READ, EXP = "floor: one read (amax)", "floor: torch.exp(out=)"
HD_ARGMAX = "heatdecode argmax"


# ---------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------


class NaiveMeshgridSoftArgmax(torch.nn.Module):
    """The spatial soft-argmax module most people copy.

    Buffers from ``np.meshgrid`` with its default 'xy' indexing, a softmax over
    the flattened map, ``sum(pos * softmax)`` per axis. Its grids are
    transposed, so it is wrong on non-square maps (timed here all the same).
    """

    def __init__(self, spatial: tuple[int, ...]) -> None:
        super().__init__()
        self.n = math.prod(spatial)
        axes = [np.linspace(-1.0, 1.0, s) for s in spatial]
        grids = np.meshgrid(*axes)  # 'xy': the classic mistake
        for k, grid in enumerate(grids):
            flat = torch.from_numpy(np.ascontiguousarray(grid).reshape(self.n)).float()
            self.register_buffer(f"pos{k}", flat)
        self.dims = len(spatial)

    def forward(self, x: Tensor) -> Tensor:
        p = F.softmax(x.reshape(-1, self.n), dim=-1)
        out = [torch.sum(getattr(self, f"pos{k}") * p, dim=1) for k in range(self.dims)]
        return torch.stack(out[::-1], -1)


def softmax_marginals(x: Tensor, spatial_dims: int) -> Tensor:
    """Plain torch: softmax over the map, then one marginal per axis dotted with its indices."""
    spatial = x.shape[-spatial_dims:]
    p = torch.softmax(x.flatten(-spatial_dims), -1).view(x.shape)
    out = []
    for k in range(spatial_dims):  # k = 0: the last axis (x)
        axis = x.ndim - 1 - k
        others = tuple(a for a in range(x.ndim - spatial_dims, x.ndim) if a != axis)
        marginal = p.sum(others)
        index = torch.arange(spatial[-1 - k], dtype=x.dtype, device=x.device)
        out.append((marginal * index).sum(-1))
    return torch.stack(out, -1)


def coordinate_grid(spatial: tuple[int, ...], device: torch.device) -> Tensor:
    """``(d, N)``: x, y[, z] of every position of the flattened map."""
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in spatial], indexing="ij")
    return torch.stack([a.reshape(-1) for a in axes[::-1]]).to(device)


def argmax_unravel(x: Tensor, spatial_dims: int) -> Tensor:
    spatial = x.shape[-spatial_dims:]
    index = x.flatten(-spatial_dims).argmax(-1)
    return torch.stack(torch.unravel_index(index, spatial)[::-1], -1)


def peers(
    maps: Tensor, spatial_dims: int
) -> tuple[dict[str, tuple[str, Callable[[Tensor], Tensor]]], list[str]]:
    """``{name: (kind, fn)}`` of the peers that can run here, and notes on those that can't."""
    spatial = tuple(maps.shape[-spatial_dims:])
    found: dict[str, tuple[str, Callable[[Tensor], Tensor]]] = {}
    notes = []
    try:
        from kornia.geometry.subpix import spatial_soft_argmax2d
    except ImportError:
        notes.append("kornia not installed (pip install -e .[bench]): its row is skipped")
    else:
        if spatial_dims == 2:
            found["kornia spatial_soft_argmax2d"] = ("soft", spatial_soft_argmax2d)
        else:
            notes.append("kornia has no 3D spatial soft-argmax: its row is skipped")
    try:
        import dsntnn
    except ImportError:
        notes.append("dsntnn not installed (pip install -e .[bench]): its row is skipped")
    else:
        found["dsntnn flat_softmax + dsnt"] = (
            "soft",
            lambda x: dsntnn.dsnt(dsntnn.flat_softmax(x)),
        )
    naive = NaiveMeshgridSoftArgmax(spatial).to(maps.device)
    found["naive meshgrid module"] = ("soft", naive)
    found["torch softmax + marginals"] = ("soft", lambda x: softmax_marginals(x, spatial_dims))
    grid = coordinate_grid(spatial, maps.device)
    found["torch softmax + F.linear grid"] = (
        "soft",
        lambda x: F.linear(torch.softmax(x.flatten(-spatial_dims), -1), grid),
    )
    found["torch.argmax + unravel_index"] = ("hard", lambda x: argmax_unravel(x, spatial_dims))
    return found, notes


# ---------------------------------------------------------------------------
# One workload
# ---------------------------------------------------------------------------


def contenders(
    maps: Tensor, spatial_dims: int, grad: bool
) -> tuple[dict[str, tuple[str, Callable[[], object]]], list[str]]:
    """``{name: (kind, call)}``: kind is floor, hd-soft, hd-hard, soft, hard or grad."""
    spatial = tuple(range(-spatial_dims, 0))
    buffer = torch.empty_like(maps)
    calls: dict[str, tuple[str, Callable[[], object]]] = {
        READ: ("floor", lambda: maps.amax(spatial)),
        EXP: ("floor", lambda: torch.exp(maps, out=buffer)),
    }
    for name in DECODERS:
        kind = "hd-soft" if name == "softargmax" else "hd-hard"
        calls[f"heatdecode {name}"] = (kind, _bind(decode, maps, name, spatial_dims=spatial_dims))
    calls["heatdecode softargmax β=20 minmax"] = (
        "hd-soft",
        _bind(decode, maps, "softargmax", spatial_dims=spatial_dims, beta=20.0, normalize="minmax"),
    )
    found, notes = peers(maps, spatial_dims)
    for name, (kind, fn) in found.items():
        calls[name] = (kind, _bind(fn, maps))
    if grad:
        trainable = {
            "heatdecode softargmax": lambda x: decode(x, "softargmax", spatial_dims=spatial_dims)[
                0
            ],
            "heatdecode local-softargmax": lambda x: decode(
                x, "local-softargmax", spatial_dims=spatial_dims
            )[0],
        }
        trainable.update({n: fn for n, (kind, fn) in found.items() if kind == "soft"})
        for name, fn in trainable.items():
            calls[f"fwd+bwd: {name}"] = ("grad", _forward_backward(fn, maps))
    return calls, notes


def _bind(fn: Callable, *args, **kwargs) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return call


def _forward_backward(fn: Callable[[Tensor], Tensor], maps: Tensor) -> Callable[[], object]:
    leaf = maps.detach().clone().requires_grad_(True)

    def call() -> object:
        leaf.grad = None
        fn(leaf).sum().backward()
        return leaf.grad

    return call


def run_workload(
    name: str,
    shape: tuple[int, ...],
    spatial_dims: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    grad: bool,
) -> dict:
    maps = synthetic_maps(shape, spatial_dims, device=device, seed=0)
    calls, notes = contenders(maps, spatial_dims, grad)
    times = time_round_robin(
        {n: call for n, (_, call) in calls.items()},
        repeats=repeats,
        warmup=warmup,
        sync=synchronizer(device),
    )
    count = math.prod(shape[: len(shape) - spatial_dims])
    medians = {n: median_ms(t) for n, t in times.items()}
    fastest = {
        kind: min((medians[n] for n, (k, _) in calls.items() if k == kind), default=math.nan)
        for kind in ("soft", "hard")
    }
    rows = []
    for n, (kind, _) in calls.items():
        ms = medians[n]
        peer = {"hd-soft": "soft", "soft": "soft", "hd-hard": "hard", "hard": "hard"}.get(kind)
        rows.append(
            {
                "contender": n,
                "kind": kind,
                "median_ms": ms,
                "maps_per_s": count / ms * 1e3,
                "x_read": ms / medians[READ],
                "x_exp": ms / medians[EXP],
                "x_fastest_peer": ms / fastest[peer] if peer else None,
                "x_heatdecode_argmax": ms / medians[HD_ARGMAX],
                "times_ms": [t * 1e3 for t in times[n]],
            }
        )
    return {
        "workload": name,
        "shape": list(shape),
        "spatial_dims": spatial_dims,
        "maps": count,
        "input_bytes": maps.numel() * maps.element_size(),
        "notes": notes,
        "rows": rows,
    }


# ---------------------------------------------------------------------------
# Peak extra memory
# ---------------------------------------------------------------------------

_PROBE = r"""
import gc, json, sys
import torch
from heatdecode.bench import synthetic_maps
from heatdecode.family import decode

shape, dims, name, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

small = synthetic_maps((2,) + tuple(shape[-dims:]), dims)
decode(small, name, spatial_dims=dims)  # lazy initialisation, not the call's memory
maps = synthetic_maps(shape, dims)
gc.collect()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
with torch.no_grad():
    decode(maps, name, spatial_dims=dims)
print(json.dumps({"extra_bytes": status("VmHWM") - base}))
"""


def probe_cpu_memory(shape: tuple[int, ...], dims: int, name: str, threads: int) -> int | None:
    """Peak resident bytes one call of ``name`` adds, in a fresh process; None if unmeasurable."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    # a fixed mmap threshold: every large allocation is a fresh mapping, so freed
    # memory can't be reused unseen and each one shows in the peak
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    args = json.dumps([list(shape), dims, name, threads])
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        return None
    return int(json.loads(done.stdout.strip().splitlines()[-1])["extra_bytes"])


def cuda_memory(maps: Tensor, dims: int, name: str) -> int:
    torch.cuda.synchronize(maps.device)
    torch.cuda.reset_peak_memory_stats(maps.device)
    base = torch.cuda.memory_allocated(maps.device)
    with torch.no_grad():
        decode(maps, name, spatial_dims=dims)
    torch.cuda.synchronize(maps.device)
    return torch.cuda.max_memory_allocated(maps.device) - base


def measure_memory(result: dict, device: torch.device, threads: int) -> None:
    shape, dims = tuple(result["shape"]), result["spatial_dims"]
    maps = synthetic_maps(shape, dims, device=device) if device.type == "cuda" else None
    memory = {}
    for name in DECODERS:
        if device.type == "cuda":
            memory[name] = cuda_memory(maps, dims, name)
        elif device.type == "cpu":
            memory[name] = probe_cpu_memory(shape, dims, name, threads)
    result["extra_memory_bytes"] = memory


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.2f}×"


def table(result: dict) -> str:
    shape = "×".join(str(s) for s in result["shape"])
    lines = [
        f"**{result['workload']}** `({shape})`, {result['maps']} maps",
        "",
        "| contender | median ms | maps/s | × read | × exp | × fastest peer | × hd argmax |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['contender']} | {row['median_ms']:.2f} | {row['maps_per_s']:,.0f} | "
            f"{_ratio(row['x_read'])} | {_ratio(row['x_exp'])} | "
            f"{_ratio(row['x_fastest_peer'])} | {_ratio(row['x_heatdecode_argmax'])} |"
        )
    memory = result.get("extra_memory_bytes")
    if memory:
        size = result["input_bytes"]
        cells = ", ".join(
            f"{n} {b / 2**20:.1f} MB ({b / size:.2f}× input)" if b is not None else f"{n} n/a"
            for n, b in memory.items()
        )
        lines += ["", f"Peak extra memory per call (input {size / 2**20:.1f} MB): {cells}"]
    for note in result["notes"]:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines)


RATIOS = ("median_ms", "maps_per_s", "x_read", "x_exp", "x_fastest_peer", "x_heatdecode_argmax")


def combine(rounds: list[dict]) -> dict:
    """One workload's rounds as one result: every number the median over the rounds."""
    result = dict(rounds[0])
    rows = []
    for k, row in enumerate(rounds[0]["rows"]):
        merged = dict(row)
        for key in RATIOS:
            values = [r["rows"][k][key] for r in rounds]
            merged[key] = None if values[0] is None else statistics.median(values)
        merged["times_ms"] = [t for r in rounds for t in r["rows"][k]["times_ms"]]
        if len(rounds) > 1:
            merged["rounds"] = {key: [r["rows"][k][key] for r in rounds] for key in RATIOS}
        rows.append(merged)
    result["rows"] = rows
    return result


def summary(results: list[dict]) -> str:
    """One compact table: each contender's median ms per workload, with its ratio to a floor.

    Soft-argmax rows (and forward + backward) are given against the exp
    floor, the argmaxes against the one-read floor, heatdecode's refinements
    against heatdecode's argmax: the bars they are held to.
    """
    names = [row["contender"] for row in results[0]["rows"]]
    for result in results[1:]:
        names += [r["contender"] for r in result["rows"] if r["contender"] not in names]
    head = " | ".join(f"{r['workload']} `{'×'.join(map(str, r['shape']))}`" for r in results)
    lines = [f"| contender | {head} |", "|---" + "|---:" * len(results) + "|"]
    for name in names:
        cells = []
        for result in results:
            row = next((r for r in result["rows"] if r["contender"] == name), None)
            if row is None:
                cells.append("n/a")
                continue
            if name in (HD_ARGMAX, "torch.argmax + unravel_index", READ):
                ratio = f"{row['x_read']:.2f}× read"
            elif row["kind"] == "hd-hard":
                ratio = f"{row['x_heatdecode_argmax']:.2f}× argmax"
            else:
                ratio = f"{row['x_exp']:.2f}× exp"
            cells.append(f"{row['median_ms']:.2f} ms ({ratio})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment(device: torch.device) -> dict:
    info = {
        "heatdecode": heatdecode.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        default="all",
        help="cpu, cuda, cuda:N, or all (cpu, plus cuda when present; default)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed calls each (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls each first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole measurement; report each number's median over rounds",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--grad", action="store_true", help="also time forward + backward")
    parser.add_argument(
        "--memory", action="store_true", help="also measure each decoder's peak extra memory"
    )
    parser.add_argument(
        "--json",
        default="benchmarks/results/decoders_{device}.json",
        help="where to write the results; {device} is replaced by the device's type",
    )
    args = parser.parse_args(argv)
    if args.repeats < 20:
        print(f"note: --repeats {args.repeats} < 20: medians are less stable", file=sys.stderr)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    if args.device == "all":
        devices = [torch.device("cpu")]
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("cuda is not available here: skipped", file=sys.stderr)
            return 0
        devices = [device]
    for device in devices:
        env = environment(device)
        print(
            f"## {device}: {env.get('gpu', env['cpu'])}, {env['threads']} threads, "
            f"torch {env['torch']}, heatdecode {env['heatdecode']}\n"
        )
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in names:  # workloads alternate, so a slow spell hits all of them
                shape, dims = WORKLOADS[name]
                result = run_workload(
                    name, shape, dims, device, args.repeats, args.warmup, args.grad
                )
                rounds[name].append(result)
                if args.rounds > 1:
                    print(f"round {round_ + 1}/{args.rounds}: {name} done", file=sys.stderr)
        results = []
        for name in names:
            result = combine(rounds[name])
            if args.memory:
                measure_memory(result, device, torch.get_num_threads())
            print(table(result) + "\n", flush=True)
            results.append(result)
        print(summary(results) + "\n")
        out = Path(args.json.format(device=device.type))
        out.parent.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/bench_decoders.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        payload = {
            "schema": "heatdecode.bench/1",
            "command": command.strip(),
            "environment": env,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "workloads": results,
        }
        out.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
