import copy

import torch
import torch.nn.functional as F

from bnlab import build_model
from bnlab.probes.context import ProbeContext
from bnlab.probes.layer_stats import layer_stats


def test_layer_stats_against_the_step_actually_taken():
    torch.manual_seed(0)
    model = build_model(depth=8).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (8,))
    for _ in range(2):  # a momentum buffer exists on the second step
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        res = layer_stats(model, ctx=ProbeContext(optimizer=opt, lr=0.05)).table
        assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
        state = copy.deepcopy(opt.state_dict())
        opt.step()
        for _, r in res.iterrows():
            w0 = before[f"{r['layer']}.weight"]
            if r["metric"] == "weight_norm":
                assert abs(r["value"] - float(w0.norm())) < 1e-12
            elif r["metric"] == "grad_norm":
                assert abs(r["value"] - float(grads[f"{r['layer']}.weight"].norm())) < 1e-12
            else:
                w1 = dict(model.named_parameters())[f"{r['layer']}.weight"].detach()
                want = float((w1 - w0).norm() / w0.norm())
                assert abs(r["value"] - want) <= 1e-9 * max(want, 1e-12), (r["layer"], r["value"], want)
        del state
    assert set(res["metric"]) == {"weight_norm", "grad_norm", "update_ratio"}


def test_layer_stats_from_minibatches_is_the_mean_gradient_over_them():
    """Without .grad, layer_stats differentiates the mean over minibatches of each minibatch's mean loss in
    training mode (the shared weight_grads.batch_weight_grads): compare with backward in float64."""
    torch.manual_seed(1)
    model = build_model(depth=8).double().eval()
    batches = [
        (torch.randn(6, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (6,))),
        (torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))),
    ]
    ref = copy.deepcopy(model).train()
    sum(F.cross_entropy(ref(x), y) for x, y in batches).div(len(batches)).backward()
    want = {n: float(p.grad.norm()) for n, p in ref.named_parameters() if n.endswith(".weight")}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    out = layer_stats(model, batches, ctx=ProbeContext())
    assert out.attrs["grad_source"] == "batches"
    res = out.table
    g = res[res["metric"] == "grad_norm"]
    assert set(g["layer"] + ".weight") == set(want)
    for _, r in g.iterrows():
        w = want[f"{r['layer']}.weight"]
        assert abs(r["value"] - w) <= 1e-10 * max(w, 1e-12), (r["layer"], r["value"], w)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # running stats restored


def test_default_layer_stats_do_not_change_the_trajectory(tmp_path, tiny_overrides):
    import json

    from bnlab.training import train

    a = train(None, tmp_path / "a", tiny_overrides + ["train.layer_stats_every=0"], progress=False)
    b = train(None, tmp_path / "b", tiny_overrides + ["train.layer_stats_every=3"], progress=False)
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert all(sa[k] == sb[k] for k in sa if k.endswith(("loss", "acc")))
    assert not (a / "probes" / "layer_stats.jsonl").exists()
    steps = {json.loads(x)["step"] for x in (b / "probes" / "layer_stats.jsonl").read_text().splitlines()}
    assert steps == {0, 3, 6, 9, 12, 15}
