"""ANN choice: faiss, usearch and hnswlib HNSW for maximum-inner-product candidate retrieval, against exact scoring.

Usage: python benchmarks/ann_choice.py [--items 100000,1000000] [--dim 65] [--queries 2000] [--seed 0]
                                       [--libs faiss-flat,faiss-hnsw,usearch,hnswlib] [--efs 64,128,256,512]
                                       [--threads 1] [--batch 256] [--k 200] [--passes 3] [--timeout-s 3600]

Data, shaped like streamrec's adapted item embeddings: ``dim - 1`` (64) float32 columns from a Gaussian mixture
(200 clusters of Dirichlet-drawn sizes, per-item norm scale log-normal) plus one last column holding a per-item
bias; user queries are drawn near cluster centres with a trailing 1.0, so ``score = dot(user, item) = u.v + bias``.
Every library uses inner product (never cosine): faiss ``IndexHNSWFlat(METRIC_INNER_PRODUCT)`` behind an
``IndexIDMap`` (integer labels), usearch ``Index(metric="ip")``, hnswlib ``space="ip"``; HNSW with M /
connectivity 16 and ef_construction / expansion_add ``--ef-construction`` (80). ``faiss IndexFlatIP`` (exact) is
the baseline row.

Per (library, size), each in its own subprocess so its resident-memory growth is its own:
  build_s   building the index from ``items`` vectors with integer labels 0..n-1,
  mem_mb    RSS growth (``/proc/self/statm``) from just before the index exists to just after the build,
  add1k_s   adding 1,000 new items (labels n..n+999) to the built index,
  then, for each ef in ``--efs`` (64,128,256,512; faiss efSearch, usearch expansion_search, hnswlib set_ef):
  ``--queries`` queries in batches of ``--batch`` (256) asking top-``--k`` (200), repeated ``--passes`` times;
  p50_ms / p99_ms  per-batch wall time over all batches of all passes,
  recall10 / recall200  mean |approx top-k ∩ exact top-k| / k over the queries (first pass; the exact top-k is a
                        numpy matmul + argpartition over all n + 1,000 items, so the added items must be found too).
usearch and hnswlib search with max(ef, k) candidates (with k = 200, ef 64 and 128 give the same results); faiss
does not raise efSearch to k, so its recall@200 at ef < 200 is lower. ef 512 is in the default list because
recall@200, not just recall@10, matters for a top-200 candidate stage.
Threads: ``--threads`` (1) everywhere (faiss.omp_set_num_threads, usearch ``threads=``, hnswlib ``num_threads``,
OMP/BLAS variables), since the machine is shared.

Output: one markdown table, then one line per row for scripts:
``ANN lib=L items=N build_s=B add1k_s=A p50_ms=P p99_ms=Q recall10=R recall200=S mem_mb=M ef=E``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# before numpy/faiss start their thread pools (parent: the exact top-k matmul; children: the libraries)
_t = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "1"
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = _t

import numpy as np  # noqa: E402  (after the thread variables above)

LIBS = ("faiss-flat", "faiss-hnsw", "usearch", "hnswlib")
N_ADD = 1000
CLUSTERS = 200
M = 16


# -- data ---------------------------------------------------------------------------------------------------------
def make_data(n: int, dim: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n + N_ADD, dim) item vectors [v | bias] and (queries, dim) user vectors [u | 1.0], float32."""
    rng = np.random.default_rng(seed)
    d = dim - 1
    centres = rng.standard_normal((CLUSTERS, d)).astype(np.float32) / np.sqrt(d)
    weights = rng.dirichlet(np.full(CLUSTERS, 0.5))
    total = n + N_ADD
    c = rng.choice(CLUSTERS, size=total, p=weights)
    scale = rng.lognormal(0.0, 0.25, size=(total, 1)).astype(np.float32)
    v = (centres[c] + 0.6 * rng.standard_normal((total, d)).astype(np.float32) / np.sqrt(d)) * scale
    bias = 0.3 * rng.standard_normal((total, 1)).astype(np.float32)
    items = np.ascontiguousarray(np.hstack([v, bias]), dtype=np.float32)
    cq = rng.choice(CLUSTERS, size=queries, p=weights)
    u = centres[cq] + 0.4 * rng.standard_normal((queries, d)).astype(np.float32) / np.sqrt(d)
    users = np.ascontiguousarray(np.hstack([u, np.ones((queries, 1), np.float32)]), dtype=np.float32)
    return items, users


def exact_topk(items: np.ndarray, users: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """(queries, k) item indices by descending score: matmul + argpartition + sort of the k."""
    out = np.empty((len(users), k), dtype=np.int64)
    for s in range(0, len(users), chunk):
        sc = users[s:s + chunk] @ items.T
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sc, part, axis=1), axis=1)
        out[s:s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=True)]))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- libraries: build(base, labels), add(vecs, labels), search(queries, k, ef) -> labels ---------------------------
class Ann:
    def build(self, x: np.ndarray, labels: np.ndarray) -> None: ...
    def add(self, x: np.ndarray, labels: np.ndarray) -> None: ...
    def search(self, q: np.ndarray, k: int, ef: int) -> np.ndarray: ...


class FaissFlat(Ann):
    def __init__(self, dim: int, threads: int, ef_c: int) -> None:
        import faiss
        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))

    def build(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.index.add_with_ids(x, labels)

    add = build

    def search(self, q: np.ndarray, k: int, ef: int) -> np.ndarray:
        return self.index.search(q, k)[1]


class FaissHNSW(Ann):
    def __init__(self, dim: int, threads: int, ef_c: int) -> None:
        import faiss
        faiss.omp_set_num_threads(threads)
        self.hnsw = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
        self.hnsw.hnsw.efConstruction = ef_c
        self.index = faiss.IndexIDMap(self.hnsw)

    def build(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.index.add_with_ids(x, labels)

    add = build

    def search(self, q: np.ndarray, k: int, ef: int) -> np.ndarray:
        self.hnsw.hnsw.efSearch = ef
        return self.index.search(q, k)[1]


class USearch(Ann):
    def __init__(self, dim: int, threads: int, ef_c: int) -> None:
        from usearch.index import Index
        self.threads = threads
        self.index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=M, expansion_add=ef_c)

    def build(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.index.add(labels.astype(np.uint64), x, threads=self.threads)

    add = build

    def search(self, q: np.ndarray, k: int, ef: int) -> np.ndarray:
        self.index.expansion_search = ef
        m = self.index.search(q, k, threads=self.threads)
        keys = m.keys.astype(np.int64)
        keys[np.arange(k)[None, :] >= m.counts[:, None]] = -1  # fewer than k found
        return keys


class HNSWLib(Ann):
    def __init__(self, dim: int, threads: int, ef_c: int) -> None:
        import hnswlib
        self.threads, self.ef_c = threads, ef_c
        self.index = hnswlib.Index(space="ip", dim=dim)

    def build(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.index.init_index(max_elements=len(x), M=M, ef_construction=self.ef_c, random_seed=0)
        self.index.add_items(x, labels, num_threads=self.threads)

    def add(self, x: np.ndarray, labels: np.ndarray) -> None:  # capacity is fixed at init: grow it first
        self.index.resize_index(self.index.get_current_count() + len(x))
        self.index.add_items(x, labels, num_threads=self.threads)

    def search(self, q: np.ndarray, k: int, ef: int) -> np.ndarray:
        self.index.set_ef(ef)
        return self.index.knn_query(q, k=k, num_threads=self.threads)[0].astype(np.int64)


MAKERS: dict[str, type[Ann]] = {"faiss-flat": FaissFlat, "faiss-hnsw": FaissHNSW, "usearch": USearch,
                                "hnswlib": HNSWLib}


# -- one (library, size), in its own process ------------------------------------------------------------------------
def run_child(args: argparse.Namespace) -> None:
    items = np.load(Path(args.cache) / "items.npy")
    users = np.load(Path(args.cache) / "users.npy")
    truth = np.load(Path(args.cache) / "truth.npy")
    n = len(items) - N_ADD
    base, new = items[:n], items[n:]
    labels = np.arange(n + N_ADD, dtype=np.int64)
    lib = args.lib
    efs = [0] if lib == "faiss-flat" else [int(e) for e in args.efs.split(",")]
    ann = MAKERS[lib](items.shape[1], args.threads, args.ef_construction)  # imports the library, empty index
    r0 = rss_mb()
    t = time.perf_counter()
    ann.build(base, labels[:n])
    build_s = time.perf_counter() - t
    mem_mb = rss_mb() - r0
    t = time.perf_counter()
    ann.add(new, labels[n:])
    add_s = time.perf_counter() - t
    ann.search(users[:args.batch], args.k, efs[0])  # warm-up, untimed
    rows = []
    for ef in efs:
        times: list[float] = []
        found = np.empty((len(users), args.k), dtype=np.int64)
        for p in range(args.passes):
            for s in range(0, len(users), args.batch):
                t = time.perf_counter()
                got = ann.search(users[s:s + args.batch], args.k, ef)
                times.append(time.perf_counter() - t)
                if p == 0:
                    found[s:s + args.batch] = got
        rows.append({"lib": lib, "items": n, "build_s": build_s, "add1k_s": add_s,
                     "p50_ms": 1000 * float(np.percentile(times, 50)), "p99_ms": 1000 * float(np.percentile(times, 99)),
                     "recall10": recall(found, truth, 10), "recall200": recall(found, truth, args.k),
                     "mem_mb": mem_mb, "ef": ef if ef else "exact"})
    print(json.dumps(rows))


def measure(lib: str, cache: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--child", "--lib", lib, "--cache", cache, "--threads", str(args.threads),
           "--efs", args.efs, "--ef-construction", str(args.ef_construction), "--batch", str(args.batch),
           "--k", str(args.k), "--passes", str(args.passes)]
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        return [{"lib": lib, "error": f"timeout after {args.timeout_s:.0f} s"}]
    wall = time.perf_counter() - t
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return [{"lib": lib, "error": f"exit {p.returncode}: {tail}"}]
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"  {rows[0]['items']:,} items, {lib}: {wall:.0f} s", file=sys.stderr, flush=True)
    return rows


# -- output -------------------------------------------------------------------------------------------------------
def print_table(rows: list[dict[str, Any]]) -> None:
    head = ["lib", "items", "ef", "build_s", "add1k_s", "p50_ms", "p99_ms", "recall10", "recall200", "mem_mb"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        if "error" in r:
            print(f"| {r['lib']} | {r.get('items', '?')} | {r['error']} |" + " |" * (len(head) - 3))
            continue
        print(f"| {r['lib']} | {r['items']:,} | {r['ef']} | {r['build_s']:.2f} | {r['add1k_s']:.3f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['recall10']:.4f} | {r['recall200']:.4f} | "
              f"{r['mem_mb']:.0f} |")


def ann_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ANN lib={r['lib']} items={r.get('items', '?')} error={r['error'].replace(' ', '_')}"
    return (f"ANN lib={r['lib']} items={r['items']} build_s={r['build_s']:.3f} add1k_s={r['add1k_s']:.4f} "
            f"p50_ms={r['p50_ms']:.2f} p99_ms={r['p99_ms']:.2f} recall10={r['recall10']:.4f} "
            f"recall200={r['recall200']:.4f} mem_mb={r['mem_mb']:.1f} ef={r['ef']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default="100000,1000000", help="comma-separated catalog sizes (before the 1,000 added)")
    ap.add_argument("--dim", type=int, default=65, help="vector width: dim - 1 embedding columns + 1 bias column")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--efs", default="64,128,256,512", help="search ef values (each reported)")
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--passes", type=int, default=3, help="timed passes over the queries (recall from the first)")
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="a (library, size) process is stopped after this")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lib", default="", help=argparse.SUPPRESS)
    ap.add_argument("--cache", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return
    libs = [x for x in args.libs.split(",") if x]
    unknown = set(libs) - set(LIBS)
    if unknown:
        ap.error(f"unknown --libs {sorted(unknown)}; choose from {LIBS}")
    rows: list[dict[str, Any]] = []
    for n in [int(x) for x in args.items.split(",") if x]:
        with tempfile.TemporaryDirectory(prefix="ann_choice_") as cache:
            t = time.perf_counter()
            items, users = make_data(n, args.dim, args.queries, args.seed)
            truth = exact_topk(items, users, args.k)
            np.save(Path(cache) / "items.npy", items)
            np.save(Path(cache) / "users.npy", users)
            np.save(Path(cache) / "truth.npy", truth)
            del items, users, truth
            print(f"  {n:,} items: data + exact top-{args.k} in {time.perf_counter() - t:.0f} s", file=sys.stderr,
                  flush=True)
            for lib in libs:
                for r in measure(lib, cache, args):
                    r.setdefault("items", n)
                    rows.append(r)
    print(f"$ python benchmarks/ann_choice.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"inner product, dim {args.dim} (last column = bias), M {M}, ef_construction {args.ef_construction}, "
          f"top-{args.k} in batches of {args.batch}, {args.queries} queries x {args.passes} passes, "
          f"{args.threads} thread(s); recall against exact over items + {N_ADD} added")
    print()
    print_table(rows)
    print()
    for r in rows:
        print(ann_line(r))


if __name__ == "__main__":
    main()
