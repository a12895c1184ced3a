"""Response time and memory per item of the three BEBR index types, measured side by side at equal N.

The BEBR paper claims that symmetric distance calculation (SDC) over recurrent binary codes "achieves lower
response time than Hamming codes", at a fraction of a float index's memory. `speed_table` measures it:

- hash:  Hamming top-k over packed ±1 codes (`bitlens.search.hamming_topk`);
- bebr:  SDC top-k over recurrent codes stored as bit planes (`bitlens.search.sdc_topk`);
- float: exact inner-product top-k over float32 vectors (faiss `IndexFlatIP`; a numpy matrix product when
         faiss is missing — the method column says which ran).

Every system gets the same queries count, database size and k, one warm-up call and the minimum of `repeat`
timed calls in the same run; index construction is outside the timing. `claim_sentence` turns the table into
the sentence a notebook prints, so the stated order always follows the measured numbers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from bitlens import codes, search

PAPER_CLAIM = "SDC achieves lower response time than Hamming codes"


@dataclass
class System:
    """One index under test: `run()` answers all queries once (top-k)."""

    name: str
    method: str
    bits_per_item: int
    bytes_per_item: int
    n_items: int
    n_queries: int
    run: Callable[[], object]
    data: tuple = ()  # (queries, database) as the system holds them, for peers that need the same data


def _engine(be: str) -> str:
    """The backend as the table names it, with the native kernel it runs (e.g. 'native avx512')."""
    kernel = search.native_kernel() if be == "native" else None
    return f"{be} {kernel}" if kernel else be


def hash_system(query_packed, db_packed, bits: int, k: int, backend: str = "auto") -> System:
    q, db = np.ascontiguousarray(query_packed), np.ascontiguousarray(db_packed)
    be = search.resolve_backend(backend)
    return System("hash", f"Hamming top-{k}, bitlens {_engine(be)}", bits, db.shape[1], db.shape[0], q.shape[0],
                  lambda: search.hamming_topk(q, db, k, backend=be), (q, db))


def bebr_system(query: codes.RecurrentCode, db: codes.RecurrentCode, k: int, metric: str = "ip",
                backend: str = "auto") -> System:
    be = search.resolve_backend(backend)
    return System("bebr", f"SDC top-{k} ({metric}), bitlens {_engine(be)}", db.bits, db.bytes_per_item, len(db),
                  len(query), lambda: search.sdc_topk(query, db, k, metric=metric, backend=be), (query, db))


def float_system(query, db, k: int) -> System:
    q = np.ascontiguousarray(query, dtype=np.float32)
    x = np.ascontiguousarray(db, dtype=np.float32)
    if search.faiss_backend.available():
        import faiss

        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        run, method = (lambda: index.search(q, k)), f"faiss IndexFlatIP top-{k}"
    else:
        def run():
            s = q @ x.T
            part = np.argpartition(-s, min(k, s.shape[1]) - 1, axis=1)[:, :k]
            return np.take_along_axis(s, part, 1), part

        method = f"numpy matmul + argpartition top-{k} (faiss not installed)"
    return System("float", method, 32 * x.shape[1], 4 * x.shape[1], x.shape[0], q.shape[0], run, (q, x))


def synthetic_systems(n_queries: int, n_items: int, k: int = 10, hash_bits: int = 1024, bebr_dims: int = 512,
                      bebr_planes: int = 2, float_dims: int = 512, seed: int = 0, metric: str = "ip",
                      backend: str = "auto") -> list[System]:
    """The paper's three index types on random data of equal N: hash 1,024 bits, bebr 512 × 2, float 512-d."""
    rng = np.random.default_rng(seed)

    def pm1(n, m):
        return np.where(rng.random((n, m)) < 0.5, -1, 1).astype(np.int8)

    weights = tuple(0.5 ** i for i in range(bebr_planes))

    def recurrent(n):
        return codes.RecurrentCode.from_values(sum(w * pm1(n, bebr_dims).astype(np.float32) for w in weights),
                                               weights)

    return [hash_system(codes.pack(pm1(n_queries, hash_bits)), codes.pack(pm1(n_items, hash_bits)), hash_bits, k,
                        backend),
            bebr_system(recurrent(n_queries), recurrent(n_items), k, metric, backend),
            float_system(rng.standard_normal((n_queries, float_dims)), rng.standard_normal((n_items, float_dims)), k)]


def measure(run: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """Minimum wall time in seconds of `repeat` calls after `warmup` untimed calls."""
    if repeat < 1:
        raise ValueError(f"repeat must be ≥ 1, got {repeat}")
    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_many(runs: list[Callable[[], object]], repeat: int = 3, warmup: int = 1) -> list[float]:
    """Side by side: every run warmed up, then `repeat` rounds timing each run in turn; the minimum per run.

    Interleaving the rounds exposes every contender to the same machine load, which sequential blocks of
    repeats would not on a shared machine.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be ≥ 1, got {repeat}")
    for run in runs:
        for _ in range(warmup):
            run()
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            t0 = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def speed_table(systems: list[System], repeat: int = 3, warmup: int = 1, times: list[float] | None = None
                ) -> pd.DataFrame:
    """One row per system: response time for all queries (min of `repeat`, measured side by side with
    `measure_many`, or the given `times` in seconds), per query, and bytes per item."""
    if not systems:
        raise ValueError("speed_table: no systems to measure")
    sizes = {(s.n_items, s.n_queries) for s in systems}
    if len(sizes) != 1:
        raise ValueError(f"speed_table compares systems at equal N: got (items, queries) {sorted(sizes)}")
    if times is None:
        times = measure_many([s.run for s in systems], repeat, warmup)
    if len(times) != len(systems):
        raise ValueError(f"speed_table: {len(times)} times for {len(systems)} systems")
    rows = []
    for s, sec in zip(systems, times):
        rows.append({"system": s.name, "method": s.method, "bits per item": s.bits_per_item,
                     "bytes per item": s.bytes_per_item, "items": s.n_items, "queries": s.n_queries,
                     "response ms": 1000 * sec, "ms per query": 1000 * sec / max(1, s.n_queries)})
    df = pd.DataFrame(rows)
    if "float" in set(df["system"]):
        fl = df.loc[df["system"] == "float"].iloc[0]
        df["memory vs float"] = df["bytes per item"] / fl["bytes per item"]
        df["time vs float"] = df["response ms"] / fl["response ms"]
    return df


def _ms(x: float) -> str:
    return f"{x:.3g} ms" if x < 1000 else f"{x / 1000:.3g} s"


def claim_sentence(df: pd.DataFrame) -> str:
    """What was measured, versus the paper's claim that SDC answers faster than Hamming codes, from the numbers."""
    t = df.set_index("system")
    if not {"hash", "bebr"} <= set(t.index):
        raise ValueError("claim_sentence needs the 'hash' and 'bebr' rows of speed_table")
    h, b = t.loc["hash"], t.loc["bebr"]
    r = b["response ms"] / h["response ms"]
    if r < 1:
        verdict = f"SDC answered faster than Hamming codes ({r:.2f}× the time), as the paper claims"
    elif r > 1:
        verdict = f"SDC answered slower than Hamming codes ({r:.2f}× the time), contrary to the paper's claim"
    else:
        verdict = "SDC and Hamming codes took the same time, so the paper's claim is not confirmed"
    s = (f"Measured top-k for {int(b['queries']):,} queries over {int(b['items']):,} items: bebr SDC "
         f"({int(b['bits per item'])} bits, {int(b['bytes per item'])} B/item) {_ms(b['response ms'])} vs hash "
         f"Hamming ({int(h['bits per item'])} bits, {int(h['bytes per item'])} B/item) {_ms(h['response ms'])}: "
         f"{verdict} (\"{PAPER_CLAIM}\").")
    if "float" in t.index:
        f = t.loc["float"]
        rf = b["response ms"] / f["response ms"]
        cmp = "faster than" if rf < 1 else "slower than" if rf > 1 else "as fast as"
        s += (f" Against float search ({f['method']}, {int(f['bytes per item'])} B/item, {_ms(f['response ms'])}) "
              f"SDC was {cmp} it ({rf:.2f}× the time) at {f['bytes per item'] / b['bytes per item']:.0f}× less "
              f"memory per item.")
    return s
