"""DL2PA assignment dynamics on digits / a stratified Fashion-MNIST subset (issue 10; docs/reproductions.md).

A plain PyTorch loop around the library's MLP backbone, ``HypersphericalPrototypeHead`` and the summed
(1 − cos)² loss, so that several ways of solving the label-to-prototype assignment can be compared on the same
network, data order and optimiser:

- ``faithful``: the reference's dynamics (msed-Ebrahimi/DL2PA_CVPR24, re-implemented from its description in
  docs/methods.md §7.2): the representatives start as a Gaussian random queue, the first assignment is the Hungarian
  solution against that queue (a random permutation), the queue follows q ← normalise(1.9q + 0.1x̂_last) every
  iteration, and the Hungarian problem is solved after every epoch's evaluation.
- ``compat``: the library head with ``reference_compat=True`` as it was before issue 10 (π = identity, q = P).
- ``ours``: the library head's default rule as before issue 10 (m = 0.9, batch class means), q = P, π = identity.
- ``dl2pa``: the library head's defaults after issue 10 (first assignment against the class means of the first
  ``--warmup`` batches, then ν re-assignments per epoch).
- ``random``: a random first assignment, then per-epoch re-assignments; ``hpn``: a random assignment, never
  re-assigned; ``worst``: the worst Hungarian assignment (minimal total cosine) against the class means of the
  untrained network's training features, never re-assigned; ``best0``: the best one, never re-assigned;
  ``antisemantic`` / ``semantic``: the assignment minimising / maximising Σ_{c,c'} S_cc'·cos(p_π(c), p_π(c')),
  S = cosine between the centred class means of a quick CE model (2 epochs, penultimate features): similar
  classes on the most dissimilar / most similar prototypes (pairwise-swap local search, 200 starts), never
  re-assigned.

Writes one JSON line per run to ``--out`` (changes per re-assignment, total matching cosine, permutations,
test accuracy and confusion). Run niced; each Fashion run is ≈ 20–40 s on one core.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from neuralcollapse import data as ncd
from neuralcollapse.heads import HypersphericalPrototypeHead, assign_prototypes
from neuralcollapse.losses import prototype_alignment
from neuralcollapse.models import create as create_model

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
#: similar-class groups of Fashion-MNIST (T-shirt 0, pullover 2, coat 4, shirt 6; sandal 5, sneaker 7, boot 9).
FASHION_GROUPS = ([0, 2, 4, 6], [5, 7, 9])


def load(name: str, per_class: int, seed: int = 0):
    """(train_x, train_y, test_x, test_y) float tensors; Fashion: ``per_class`` images per class (stratified)."""
    if name == "digits":
        s = ncd.create("digits")
    else:
        s = ncd.create("fashionmnist", root=FASHION_ROOT)
    tx, ty = s.normalize(s.train_x), s.train_y
    if name != "digits" and per_class:
        g = np.random.default_rng(seed)
        idx = np.sort(np.concatenate([g.choice(np.flatnonzero(ty.numpy() == c), per_class, replace=False)
                                      for c in range(s.num_classes)]))
        tx, ty = tx[idx], ty[idx]
    return tx.flatten(1), ty, s.normalize(s.test_x).flatten(1), s.test_y


class Net(nn.Module):
    def __init__(self, in_features: int, k: int, dim: int, seed: int, hidden: tuple[int, ...], **head_kw) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = create_model("mlp", in_features=in_features, hidden=hidden)
        self.head = HypersphericalPrototypeHead(hidden[-1], k, dim=dim, seed=seed, **head_kw)

    def forward(self, x):
        return self.head(self.backbone(x))


def total_cosine(q: torch.Tensor, p: torch.Tensor, perm: torch.Tensor) -> float:
    q = torch.nn.functional.normalize(q.double(), dim=1)
    return float((q * p.double()[perm]).sum())


@torch.no_grad()
def evaluate(net: Net, x, y, k: int):
    net.eval()
    pred = torch.cat([net(x[i:i + 2000]).logits.argmax(1) for i in range(0, len(x), 2000)])
    feats = torch.cat([net(x[i:i + 2000]).features for i in range(0, len(x), 2000)])
    net.train()
    conf = torch.zeros(k, k, dtype=torch.int64)
    conf.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return float((pred == y).double().mean()), conf, feats


@torch.no_grad()
def class_means(net: Net, x, y, k: int) -> torch.Tensor:
    _, _, f = evaluate(net, x, y, k)
    return torch.zeros(k, f.shape[1]).index_add_(0, y, f)


def semantic_similarity(tx, ty, k: int, seed: int, hidden) -> torch.Tensor:
    """K×K cosine between the centred training class means of the penultimate features of a CE model (2 epochs)."""
    torch.manual_seed(10_000 + seed)
    backbone = create_model("mlp", in_features=tx.shape[1], hidden=hidden)
    net = nn.Sequential(backbone, nn.Linear(hidden[-1], k))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        order = torch.randperm(len(ty), generator=g)
        for i in range(0, len(ty), 128):
            idx = order[i:i + 128]
            loss = nn.functional.cross_entropy(net(tx[idx]), ty[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        h = backbone(tx).double()
    means = torch.zeros(k, h.shape[1], dtype=torch.float64).index_add_(0, ty, h) / torch.bincount(ty)[:, None]
    means = nn.functional.normalize(means - means.mean(0), dim=1)
    return means @ means.T


def quadratic_assignment(sim: np.ndarray, gram: np.ndarray, sign: float, seed: int, starts: int = 200) -> list:
    """π maximising sign·Σ_{c≠c'} sim[c, c']·gram[π(c), π(c')] by best-improvement pairwise swaps."""
    k = len(sim)
    rng = np.random.default_rng(seed)
    off = sim - np.diag(np.diag(sim))

    def value(p):
        return sign * float((off * gram[np.ix_(p, p)]).sum())

    best, best_v = None, -np.inf
    for _ in range(starts):
        p = rng.permutation(k)
        v = value(p)
        improved = True
        while improved:
            improved = False
            for a in range(k):
                for b in range(a + 1, k):
                    q = p.copy()
                    q[a], q[b] = q[b], q[a]
                    w = value(q)
                    if w > v + 1e-12:
                        p, v, improved = q, w, True
        if v > best_v:
            best, best_v = p, v
    return best.tolist()


def run(args) -> dict:
    tx, ty, vx, vy = DATA[args.dataset]
    k = 10
    proc = args.procedure
    head_kw = {"assignments_per_epoch": args.nu}
    if proc in ("faithful", "compat"):
        head_kw["reference_compat"] = True
    if proc == "dl2pa":
        head_kw["warmup_iterations"] = args.warmup
    else:
        head_kw["initial_assignment"] = "identity"
    net = Net(tx.shape[1], k, args.dim, args.seed, tuple(args.hidden), **head_kw)
    head = net.head
    if proc != "dl2pa":
        head.observed.fill_(True)  # the pre-issue-10 rule: momentum from the placeholder row, no first-observation
    rng = torch.Generator().manual_seed(1000 + args.seed)
    if proc == "faithful":
        queue = torch.randn(k, args.dim, generator=rng)  # reference: torch.randn(K, d), not normalised
        head.representatives.copy_(queue)
        head.assignment.copy_(assign_prototypes(queue, head.prototype_bank))
    elif proc in ("random", "hpn"):
        head.assignment.copy_(torch.randperm(k, generator=rng))
        head.representatives.copy_(head.prototype_bank[head.assignment])
    elif proc in ("antisemantic", "semantic"):
        sim = semantic_similarity(tx, ty, k, args.seed, tuple(args.hidden)).numpy()
        gram = (head.prototype_bank.double() @ head.prototype_bank.double().T).numpy()
        perm = quadratic_assignment(sim, gram, -1.0 if proc == "antisemantic" else 1.0, args.seed)
        head.assignment.copy_(torch.as_tensor(perm))
    elif proc in ("worst", "best0"):
        means = class_means(net, tx, ty, k)
        score = torch.nn.functional.normalize(means.double(), dim=1) @ head.prototype_bank.double().T
        _, cols = linear_sum_assignment(score.numpy() if proc == "worst" else -score.numpy())
        head.assignment.copy_(torch.as_tensor(cols))
    reassign = proc not in ("hpn", "worst", "best0", "antisemantic", "semantic")
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    n = len(ty)
    steps_per_epoch = math.ceil(n / args.batch)
    total_steps = steps_per_epoch * args.epochs
    nu = args.nu
    # re-assignment points (global iteration counts after which the Hungarian problem is solved)
    if nu >= 1:
        points = {round((e * nu + j + 1) * steps_per_epoch / nu) for e in range(args.epochs) for j in range(int(nu))}
    else:
        every = round(1 / nu)
        points = {steps_per_epoch * e for e in range(every, args.epochs + 1, every)}
    if args.first_at is not None:
        points.add(args.first_at)
    log = {"changes": [], "at_step": [], "total_cos": [], "perm": [], "acc": [], "probe": []}
    step = 0
    t0 = time.time()
    g = torch.Generator().manual_seed(args.seed)
    perm0 = head.assignment.clone()
    probes = set(args.probe or ())

    def probe() -> None:
        """How many classes the Hungarian solution against the current training-set class means would move."""
        means = class_means(net, tx, ty, k)
        best = assign_prototypes(means, head.prototype_bank)
        log["probe"].append([step, int((best != head.assignment).sum())])

    if 0 in probes:
        probe()
    for _epoch in range(args.epochs):
        order = torch.randperm(n, generator=g)
        for b in range(steps_per_epoch):
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = order[b * args.batch:(b + 1) * args.batch]
            x, y = tx[idx], ty[idx]
            out = net(x)
            loss = prototype_alignment(out.features, y, out.prototypes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            head.update_representatives(out.features.detach(), y)
            step += 1
            for _kind, changed in head.pop_solves():  # the head's own "class_means" solution (dl2pa)
                log["changes"].append(changed)
                log["at_step"].append(step)
                log["total_cos"].append(round(head.matching_cosine(), 4))
                log["perm"].append(head.assignment.tolist())
                perm0 = head.assignment.clone()  # "moved_from_initial" counts moves after the first assignment
            if step in probes:
                probe()
            if reassign and step in points:
                changed = head.reassign()
                head.pop_solves()
                log["changes"].append(changed)
                log["at_step"].append(step)
                log["total_cos"].append(round(total_cosine(head.representatives, head.prototype_bank,
                                                           head.assignment), 4))
                log["perm"].append(head.assignment.tolist())
        acc, conf, _ = evaluate(net, vx, vy, k)
        log["acc"].append(round(acc, 4))
    acc, conf, _ = evaluate(net, vx, vy, k)
    final = head.assignment
    bank = head.prototype_bank.double()
    pc = bank[final] @ bank[final].T
    groups = FASHION_GROUPS if args.dataset == "fashion" else ()
    within = [float(pc[i, j]) for grp in groups for a, i in enumerate(grp) for j in grp[a + 1:]]
    conf_within = sum(int(conf[i, j]) for grp in groups for i in grp for j in grp if i != j)
    return {
        "dataset": args.dataset, "procedure": proc, "dim": args.dim, "seed": args.seed, "nu": nu,
        "first_at": args.first_at, "warmup": args.warmup if proc == "dl2pa" else None, "epochs": args.epochs,
        "steps_per_epoch": steps_per_epoch,
        "test_acc": round(acc, 4), "initial_perm": perm0.tolist(), "final_perm": final.tolist(),
        "moved_from_initial": int((final != perm0).sum()),
        "within_group_proto_cos": round(float(np.mean(within)), 4) if within else None,
        "within_group_confusions": conf_within, "confusion": conf.tolist(),
        "max_proto_cos": round(float((pc - 2 * torch.eye(k, dtype=pc.dtype)).max()), 4),
        "seconds": round(time.time() - t0, 1), **log,
    }


DATA: dict = {}

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="fashion", choices=("digits", "fashion"))
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--procedure", default="ours")
    p.add_argument("--dims", type=int, nargs="+", default=[3])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--nu", type=float, default=1.0)
    p.add_argument("--first-at", type=int, default=None)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--probe", type=int, nargs="*", default=None)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/dl2pa-dynamics.jsonl")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    DATA[a.dataset] = load(a.dataset, a.per_class)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    for d in a.dims:
        for s in a.seeds:
            a.dim, a.seed = d, s
            r = run(a)
            with open(a.out, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            print(json.dumps({k: r[k] for k in ("procedure", "dim", "seed", "test_acc", "moved_from_initial",
                                                "seconds")}), "changes", r["changes"], flush=True)
