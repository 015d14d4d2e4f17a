"""Why the Relation detector inverts on fixed-prototype heads (issue 10): numbers for docs/reproductions.md.

Usage: ``python relation_check.py RUN_DIR [RUN_DIR ...]`` (digits runs, e.g. ``neuralcollapse train --objective
dl2pa --out runs/dl2pa``). For each run: AUROC (ID digits test vs digits-ood) of the library's ``relation``, of a
dense re-implementation of OpenOOD v1.5's formula written from its description (docs/methods.md §10), with the
logits multiplied by a factor s (s = 1 is what the head emits), and the quantities that explain the result:
mean max-softmax, the fraction of (test, train) pairs whose p_iᵀp_j passes the 0.03 threshold, and the mean
number of classes whose training features have a positive cosine with an ID / OOD test feature.
"""

from __future__ import annotations

import json
import sys

import torch

from neuralcollapse import ood
from neuralcollapse.data.splits import ood_pair
from neuralcollapse.ood.metrics import evaluate as ood_metrics
from neuralcollapse.training.evaluation import extract, load_module


def openood_relation(f_test, z_test, f_train, z_train, pow_=1, thres=0.03):
    """Dense OpenOOD-style relation score (normalise, clamp cosine at 0, times p_iᵀp_j, threshold, sum)."""
    def unit(f):
        return f / torch.sqrt((f ** 2).sum(-1, keepdim=True) + 1e-10)
    a, b = unit(f_test.double()), unit(f_train.double())
    pa, pb = torch.softmax(z_test.double(), 1), torch.softmax(z_train.double(), 1)
    out = []
    for i in range(0, len(a), 256):
        rel = (a[i:i + 256] @ b.T).clamp_min(0) * (pa[i:i + 256] @ pb.T)
        rel = rel * (rel.abs() > thres)
        out.append((rel.sign() * rel.abs() ** pow_).sum(1))
    return torch.cat(out)


def main(paths):
    results = {}
    for path in paths:
        module, config, _ = load_module(path, "cpu")
        pair = ood_pair("digits", "digits-ood")
        s = pair.id
        tr = extract(module, s.train_x, s.train_y)
        te = extract(module, s.test_x, s.test_y)
        oo = extract(module, pair.ood_x)
        row = {"head": config.head, "objective": config.objective}
        for scale in (1.0, 5.0, 16.0):
            det = ood.create("relation").fit(features=tr["features"], logits=scale * tr["logits"])
            lib = ood_metrics(det.score(features=te["features"], logits=scale * te["logits"]),
                              det.score(features=oo["features"], logits=scale * oo["logits"]))["auroc"]
            ref = ood_metrics(openood_relation(te["features"], scale * te["logits"], tr["features"],
                                               scale * tr["logits"]),
                              openood_relation(oo["features"], scale * oo["logits"], tr["features"],
                                               scale * tr["logits"]))["auroc"]
            row[f"auroc_lib_s{scale:g}"] = round(lib, 4)
            row[f"auroc_openood_s{scale:g}"] = round(ref, 4)
        for name, rep in (("id", te), ("ood", oo)):
            p = torch.softmax(rep["logits"].double(), 1)
            pt = torch.softmax(tr["logits"].double(), 1)
            row[f"max_softmax_{name}"] = round(float(p.max(1).values.mean()), 4)
            row[f"pairs_pass_thres_{name}"] = round(float(((p @ pt.T) > 0.03).double().mean()), 4)
            cos = torch.nn.functional.normalize(rep["features"].double(), dim=1) @ \
                torch.nn.functional.normalize(tr["features"].double(), dim=1).T
            pos = torch.zeros(len(rep["features"]), 10, dtype=torch.float64)
            pos.index_add_(1, tr["labels"], (cos > 0).double())
            counts = torch.bincount(tr["labels"], minlength=10).double()
            row[f"classes_with_positive_cos_{name}"] = round(float(((pos / counts) > 0.5).double().sum(1).mean()), 3)
            row[f"mean_clamped_cos_{name}"] = round(float(cos.clamp_min(0).mean()), 4)
        row["feature_norm_spread"] = round(float(tr["features"].norm(dim=1).std()), 6)
        results[str(path)] = row
        print(json.dumps(row), flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
