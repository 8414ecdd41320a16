"""Plain, slow losses written straight from the papers' formulas, one loop per sum."""

from __future__ import annotations

import math

import torch


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b) / (a.norm() * b.norm()))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR eq. 1: l(i,j) = -log exp(sim(i,j)/tau) / sum_{k != i} exp(sim(i,k)/tau), averaged
    over all 2N anchors."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denominator = sum(math.exp(_cos(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(_cos(z[i], z[j]) / tau) / denominator)
    return total / n2


def moco(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    """MoCo eq. 1: -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_queue exp(q.k-/tau))."""
    q, k, queue = q.double(), k.double(), queue.double()
    total = 0.0
    for i in range(q.shape[0]):
        positive = math.exp(float(q[i] @ k[i]) / tau)
        negatives = sum(math.exp(float(q[i] @ queue[j]) / tau) for j in range(queue.shape[0]))
        total += -math.log(positive / (positive + negatives))
    return total / q.shape[0]


def byol(p: torch.Tensor, z: torch.Tensor) -> float:
    """BYOL eq. 2: || p/|p| - z/|z| ||^2, averaged over the batch."""
    total = 0.0
    for i in range(p.shape[0]):
        a = p[i].double() / p[i].double().norm()
        b = z[i].double() / z[i].double().norm()
        total += float(((a - b) ** 2).sum())
    return total / p.shape[0]


def simsiam(p1, z1, p2, z2) -> float:
    """SimSiam eq. 2: L = D(p1, z2)/2 + D(p2, z1)/2 with D(p, z) = -cos(p, z)."""
    n = p1.shape[0]
    d12 = sum(-_cos(p1[i].double(), z2[i].double()) for i in range(n)) / n
    d21 = sum(-_cos(p2[i].double(), z1[i].double()) for i in range(n)) / n
    return 0.5 * d12 + 0.5 * d21


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """-log softmax(logits)[label], averaged."""
    total = 0.0
    for row, label in zip(logits.detach().double(), labels):
        total += -(float(row[label]) - math.log(sum(math.exp(float(v)) for v in row)))
    return total / logits.shape[0]


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor) -> float:
    """BERT's MLM loss: -log softmax(logits)[target], averaged over the masked positions only."""
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if chosen[b, t]:
                row = logits[b, t].detach().double()
                total += -(float(row[targets[b, t]]) - math.log(sum(math.exp(float(v)) for v in row)))
                count += 1
    return total / count


def simcse(h1: torch.Tensor, h2: torch.Tensor, tau: float, queue: torch.Tensor | None = None) -> float:
    """SimCSE eq. 4: -log e^{sim(h_i, h_i')/tau} / sum_j e^{sim(h_i, h_j')/tau}, averaged; the
    rows of `queue` (past second views) are further terms h_j' of the denominator."""
    n = h1.shape[0]
    negatives = [h2[j] for j in range(n)] + ([] if queue is None else [q for q in queue])
    total = 0.0
    for i in range(n):
        denominator = sum(math.exp(_cos(h1[i].double(), other.double()) / tau) for other in negatives)
        total += -math.log(math.exp(_cos(h1[i].double(), h2[i].double()) / tau) / denominator)
    return total / n


def setfit_cosine(u: torch.Tensor, v: torch.Tensor, same: torch.Tensor) -> float:
    """SetFit's CosineSimilarityLoss: mean over pairs of (cos(u_i, v_i) - y_i)^2, y_i 1 or 0."""
    n = u.shape[0]
    return sum((_cos(u[i].double(), v[i].double()) - float(same[i])) ** 2 for i in range(n)) / n
