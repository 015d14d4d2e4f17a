"""Plain-loop probe of LPC's γ pacing on the embedded digits, built from the library's own parts (no Lightning).

Usage (key=value arguments, all optional):

    python docs/reproductions/lpc-digits/pacing_probe.py period=40 clr=0.1 bn=0 d=16 steps=20000 decay_from=14000

period: optimizer steps per ×1.05 of γ (γ0 = g0, cap gmax); clr / lr: classifier / backbone AdamW lr; bn: BatchNorm
in the MLP; d: bottleneck width; decay_from: step from which the backbone lr follows a cosine to 0. Every 2000 steps
it prints one JSON line: γ, test accuracy, mean classifier row norm w, q = w²·d/γ, Σ_W of the test latent (mean
per-dimension within-class variance), separation ratio on test and train latents. Results: probes.md beside it.
"""
import sys, time, math, json
import torch
from neuralcollapse.training.config import TrainConfig
from neuralcollapse.training.presets import expand_objective
from neuralcollapse.training.config import merge_settings, paced_gamma_schedule
from neuralcollapse.training.datamodule import load_data, data_info
from neuralcollapse.training.network import build_network
from neuralcollapse.training.optim import build_optimizer
from neuralcollapse.losses import lpc_penalty
from neuralcollapse.metrics import separation_ratio
import torch.nn.functional as F

args = dict(a.split("=") for a in sys.argv[1:])
period = int(args.get("period", 391)); clr = float(args.get("clr", 1e-3)); lr = float(args.get("lr", 1e-3))
steps = int(args.get("steps", 20000)); seed = int(args.get("seed", 0)); bs = int(args.get("bs", 64))
f = float(args.get("factor", 1.05)); g0 = float(args.get("g0", 0.01))
torch.manual_seed(seed)
cfg = merge_settings(TrainConfig(), expand_objective("lpc"), source="p")
bn = bool(int(args.get("bn", 1))); gmax = float(args.get("gmax", 1e6))
cfg = cfg.replace(classifier_lr=clr, lr=lr, batch_size=bs, seed=seed, model_kwargs={"batch_norm": bn}, head_kwargs={"latent_dim": int(args.get("d", 64))})
splits, extras = load_data(cfg); info = data_info(splits, extras)
net = build_network(cfg, info)
opt = build_optimizer(cfg, net, head=net.head)
x = splits.train_x.float(); y = splits.train_y
mean = torch.tensor(splits.mean).view(1, -1, 1, 1); std = torch.tensor(splits.std).view(1, -1, 1, 1)
def norm(v): return ((v.float() / 255.0 if v.dtype == torch.uint8 else v) - mean) / std
xt, yt = norm(splits.test_x), splits.test_y
x = norm(splits.train_x)
n = len(y); t0 = time.time(); step = 0
decay_from = int(args.get('decay_from', steps + 1))
base_lrs = [g['lr'] for g in opt.param_groups]
def gamma_at(s): return min(g0 * f ** (s // period), gmax)
while step < steps:
    perm = torch.randperm(n)
    for i in range(0, n, bs):
        idx = perm[i:i+bs]
        net.train()
        if step >= decay_from:
            frac = (step - decay_from) / max(steps - decay_from, 1)
            for grp, b in zip(opt.param_groups, base_lrs):
                if grp.get('name') == 'backbone': grp['lr'] = b * 0.5 * (1 + math.cos(math.pi * frac))
        out = net(x[idx]); g = gamma_at(step)
        loss = F.cross_entropy(out.logits, y[idx]) + g * lpc_penalty(out.latent)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        if step % 2000 == 0 or step == steps:
            net.eval()
            with torch.no_grad():
                o = net(xt); acc = (o.logits.argmax(1) == yt).float().mean().item()
                w = net.head.weight.norm(dim=1).mean().item(); d = net.head.weight.shape[1]
                h = o.latent.double(); sw = sum(h[yt == c].var(0).mean() for c in range(10)).item() / 10
                sep = float(separation_ratio(o.latent, yt))
                otr = net(x); sep_tr = float(separation_ratio(otr.latent, y)); acc_tr = (otr.logits.argmax(1) == y).float().mean().item()
            print(json.dumps(dict(step=step, gamma=g, acc=round(acc, 4), w=round(w, 2), q=(w * w * d / g if g else None),
                                  sigma_w=sw, sep=round(sep, 2), sep_tr=round(sep_tr, 2), acc_tr=round(acc_tr, 4), t=round(time.time() - t0, 1))), flush=True)
        if step >= steps: break
