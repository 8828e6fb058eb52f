"""Tensor helpers the adapter's parts share: history rows as right-aligned index matrices, grown copies, distinct
rows, and the principal basis the frozen embeddings are projected on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def right_aligned(codes: Sequence[int], lengths: Sequence[int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows given one after another in ``codes`` (``lengths`` each; -1 = unknown, dropped), each row's last
    ``width`` codes right-aligned in a (rows, width) matrix, and the mask of filled cells.

    >>> idx, mask = right_aligned([5, 6, -1, 7, 8, 9], [3, 0, 3], 2)
    >>> idx.tolist(), mask.tolist()
    ([[5, 6], [0, 0], [8, 9]], [[True, True], [False, False], [True, True]])
    """
    rows = len(lengths)
    c = np.asarray(codes, dtype=np.int64)
    row = np.repeat(np.arange(rows), np.asarray(lengths, dtype=np.int64))
    keep = c >= 0
    row, c = row[keep], c[keep]
    ends = np.cumsum(np.bincount(row, minlength=rows))
    from_right = ends[row] - np.arange(len(row)) - 1  # 0 for a row's last code
    take = from_right < width
    col = width - 1 - from_right[take]
    idx = np.zeros((rows, width), dtype=np.int64)
    mask = np.zeros((rows, width), dtype=bool)
    idx[row[take], col] = c[take]
    mask[row[take], col] = True
    return idx, mask


def principal_basis(emb: torch.Tensor, k: int, seed: int = 0, svd_max_rows: int = 65_536) -> torch.Tensor:
    """An orthonormal (dim, k) basis: the k leading right singular vectors of ``emb`` (rows = items), completed
    with seeded random directions when ``emb`` has rank below k.

    Up to ``svd_max_rows`` rows, from the SVD of ``emb`` in float64; past it, from the eigenvectors of the (dim, dim)
    Gram matrix ``emb.T @ emb`` summed in float64 over chunks of rows (the same directions, signs aside): the SVD
    of a million 384-wide rows held 3 GB of left singular vectors and a float64 copy besides, and took a minute.

    >>> e = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> b = principal_basis(e, 1); [round(abs(x), 3) for x in b[:, 0].tolist()]
    [1.0, 0.0, 0.0]
    >>> b = principal_basis(e, 3); bool(torch.allclose(b.T @ b, torch.eye(3), atol=1e-5))
    True
    >>> [round(abs(x), 3) for x in principal_basis(e, 1, svd_max_rows=1)[:, 0].tolist()]
    [1.0, 0.0, 0.0]
    """
    if emb.shape[0] <= svd_max_rows:
        _, sv, vt = torch.linalg.svd(emb.double().cpu(), full_matrices=False)
    else:
        gram = torch.zeros(emb.shape[1], emb.shape[1], dtype=torch.float64)
        for i in range(0, emb.shape[0], svd_max_rows):
            part = emb[i : i + svd_max_rows].double().cpu()
            gram += part.T @ part
        eig, vecs = torch.linalg.eigh(gram)  # ascending
        sv, vt = eig.flip(0).clamp(min=0.0).sqrt(), vecs.flip(1).T
    rank = int((sv > sv.max() * 1e-6).sum()) if sv.numel() else 0
    top = vt[: min(k, rank)].T
    if top.shape[1] < k:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.cat([top, torch.randn(emb.shape[1], k - top.shape[1], generator=g,
                                                           dtype=torch.float64)], dim=1))
        top = torch.cat([top, q[:, top.shape[1]:]], dim=1)
    basis: torch.Tensor = top.float().to(emb.device)
    return basis


def padded(t: torch.Tensor, capacity: int) -> torch.Tensor:
    """``t``'s rows (detached), then zero rows up to ``capacity``."""
    out = torch.zeros((capacity, *t.shape[1:]), device=t.device, dtype=t.dtype)
    out[: t.shape[0]] = t.detach()
    return out


def unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of a 1-D index tensor and each entry's position among them (torch 2.13's unique took
    1.5 ms for the ~10^5 indices of a batch's candidates on 2 cores, numpy's 5.5 to 6.6 ms).

    >>> [t.tolist() for t in unique_rows(torch.tensor([5, 2, 5, 9]))]
    [[2, 5, 9], [1, 0, 1, 2]]
    """
    u, inv = torch.unique(x, sorted=True, return_inverse=True)
    return u, inv.reshape(-1)


def take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an integer tensor ``index`` of any shape, through ``index_select`` on the first axis:
    over a (256, 474) index into (60,000, 64) rows, advanced indexing took 12.5 ms on this machine's 2 cores and
    ``index_select`` 4.8 (the candidates' vectors of a two-stage micro-batch).

    >>> take(torch.tensor([[1, 2], [3, 4], [5, 6]]), torch.tensor([[2, 0]])).tolist()
    [[[5, 6], [1, 2]]]
    """
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])


def cosines(vectors: torch.Tensor, v: torch.Tensor) -> np.ndarray:
    """Cosine of each row of ``vectors`` (n, d) with ``v`` (d,), in float32 (a zero row: 0).

    >>> [round(float(c), 3) for c in cosines(torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), torch.tensor([3.0, 0.0]))]
    [1.0, 0.707, 0.0]
    """
    unit = torch.nn.functional.normalize(vectors.float(), dim=1)
    out: np.ndarray = (unit @ torch.nn.functional.normalize(v.float(), dim=0)).cpu().numpy()
    return out


def grown(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for at least ``n`` entries along its first axis: itself when it has it, else a copy a quarter
    longer (or ``n``) with zeros after ``a``'s entries, so arrays that follow the catalog one item batch at a time
    copy O(items) a logarithmic number of times instead of on every batch.

    >>> a = grown(np.zeros(0), 3); a[:] = 1; b = grown(a, 4); (len(b), b.tolist()[:4], grown(b, 4) is b)
    (4, [1.0, 1.0, 1.0, 0.0], True)
    >>> len(grown(np.zeros(100), 101))
    125
    """
    if n <= len(a):
        return a
    out = np.zeros((max(n, len(a) + len(a) // 4),) + a.shape[1:], dtype=a.dtype)
    out[: len(a)] = a
    return out


def grouped_topk(scores: torch.Tensor, k: int, group: int = 32) -> torch.Tensor:
    """(B, min(k, n)) column indices of the ``k`` highest scores in each row of ``scores`` (B, n), in no particular
    order, the same set ``torch.topk`` gives (up to ties). Each row's columns are cut into groups of ``group``; the
    ``k`` groups with the highest maxima hold every one of the row's top ``k`` (a group with a top-k score has a
    maximum at least that high, and fewer than ``k`` other groups can beat it), so the top-k runs over (B, n / group)
    maxima and then over the (B, k x group) scores of the chosen groups. Over (256, 16,384) for k = 60 this took
    ~5 ms against ``torch.topk``'s ~9 on this machine's 2 cores.

    >>> s = torch.tensor([[0.0, 9, 1, 8, 2, 7, 3], [5, 4, 3, 2, 1, 0, 6]])
    >>> [sorted(r) for r in grouped_topk(s, 2, group=2).tolist()]
    [[1, 3], [0, 6]]
    """
    B, n = scores.shape
    k = min(k, n)
    whole = n - n % group
    if k <= 0 or whole < 2 * k * group:  # too few groups for the pre-selection to pay
        return torch.topk(scores, k, dim=1, sorted=False).indices
    peaks = scores[:, :whole].reshape(B, whole // group, group).amax(2)
    chosen = torch.topk(peaks, k, dim=1, sorted=False).indices
    cols = (chosen.unsqueeze(2) * group + torch.arange(group, device=scores.device)).reshape(B, k * group)
    if whole < n:  # the ragged tail's few columns are candidates themselves
        cols = torch.cat([cols, torch.arange(whole, n, device=scores.device).expand(B, n - whole)], 1)
    best = torch.topk(scores.gather(1, cols), k, dim=1, sorted=False).indices
    return cols.gather(1, best)


def chunked_topk(queries: torch.Tensor, table: torch.Tensor, k: int, chunk: int = 16_384) -> torch.Tensor:
    """(B, min(k, rows)) row indices of ``table`` with the highest inner products with each query, in no particular
    order: the product and a top-k (:func:`grouped_topk`) per ``chunk`` rows, then a top-k of the chunks' winners.
    The (B, chunk) block stays in the cache where a (B, rows) product would not: over 65,536 rows of 65 columns with
    256 queries, the whole product's 64 MB of scores cost more to write and read than the arithmetic did.

    >>> q, t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[3.0, 0], [0, 2], [5, 0], [0, 9], [1, 1]])
    >>> [sorted(r) for r in chunked_topk(q, t, 2, chunk=2).tolist()]
    [[0, 2], [1, 3]]
    """
    n = table.shape[0]
    k = min(k, n)
    if k <= 0:
        return torch.zeros((queries.shape[0], 0), dtype=torch.int64)
    vals, ids = [], []
    for start in range(0, n, chunk):
        scores = queries @ table[start : start + chunk].T
        i = grouped_topk(scores, k)
        vals.append(scores.gather(1, i))
        ids.append(i + start)
    if len(vals) == 1:
        return ids[0]
    best = torch.topk(torch.cat(vals, 1), k, dim=1, sorted=False).indices
    return torch.cat(ids, 1).gather(1, best)


def holds(idx: torch.Tensor, mask: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """(B, C) whether row b's masked items ``idx[b][mask[b]]`` (B, L) hold ``cand[b, c]`` (B, C): a binary search in
    each row's sorted items, O(B x C x log L), instead of a (B, C, L) comparison.

    >>> holds(torch.tensor([[4, 2, 9], [7, 7, 1]]), torch.tensor([[True, True, False], [True, True, True]]),
    ...       torch.tensor([[2, 9, -1], [1, 3, 7]])).tolist()
    [[True, False, False], [True, False, True]]
    """
    if idx.shape[1] == 0:
        return torch.zeros(cand.shape, dtype=torch.bool, device=cand.device)
    items = torch.where(mask, idx, torch.full_like(idx, torch.iinfo(idx.dtype).min)).sort(dim=1).values
    pos = torch.searchsorted(items, cand.to(items.dtype).contiguous()).clamp(max=items.shape[1] - 1)
    return items.gather(1, pos) == cand
