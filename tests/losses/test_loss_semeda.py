"""The ``semeda`` and ``sobel`` losses against independent float64 / numpy recomputations, plus their
switches, void handling, frozen edge net and errors."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seglab.errors import ConfigError
from seglab.losses import build_loss, pixel_cross_entropy
from seglab.losses.semeda import SemedaEdgeNet, SemedaLoss, SobelLoss, save_edge_net, sobel_responses
from seglab.models.outputs import SegOutput

V = 255
C = 4


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------- shared inputs
def labels_with_void(seed=0, b=2, h=10, w=12):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (b, h // 2, w // 2), generator=gen).repeat_interleave(2, 1).repeat_interleave(2, 2)
    y[0, 1:4, 2:5] = V
    if b > 1:
        y[1, 6:, 0] = V
    return y


def strong_edge_net(seed=0, num_classes=C):
    """A random g with weights large enough that every level gives a sizeable gradient."""
    torch.manual_seed(seed)
    net = SemedaEdgeNet(num_classes)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    return net


def bilinear_matrix(out_size, in_size):
    """``(out, in)`` float64 matrix of 1-D bilinear resizing with ``align_corners=False``:
    source coordinate ``(i + 0.5) * in / out - 0.5``, clamped below at 0, last index repeated."""
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m


# ------------------------------------------------------------------------- float64 reference of SEMEDA
def reference_semeda(logits, labels, weights, lambdas, reduction="mean", embedding="post_relu"):
    """Eqs. 4-6 written out in float64: explicit bilinear matrices, log-sum-exp, per-pixel loops.

    ``logits``: float64 ``(B, C, h, w)`` tensor (may require grad); ``weights``: float64
    ``[(w1, b1), (w2, b2), (w3, b3)]`` copies of g. Returns ``(total, {"ce", "edge_l1", ...})``.
    """
    b, c, h, w = logits.shape
    big_h, big_w = labels.shape[1:]
    ry = torch.from_numpy(bilinear_matrix(big_h, h))
    rx = torch.from_numpy(bilinear_matrix(big_w, w))
    up = torch.einsum("yi,bcij,xj->bcyx", ry, logits, rx)
    top = up.max(1, keepdim=True).values
    logp = up - (top + torch.log(torch.exp(up - top).sum(1, keepdim=True)))
    valid = labels != V
    n_valid = int(valid.sum())
    ce = 0.0
    onehot = torch.zeros(b, c, big_h, big_w, dtype=torch.float64)
    for bi in range(b):
        for yi in range(big_h):
            for xi in range(big_w):
                if valid[bi, yi, xi]:
                    label = int(labels[bi, yi, xi])
                    ce = ce - logp[bi, label, yi, xi]
                    onehot[bi, label, yi, xi] = 1.0
    ce = ce / n_valid
    probs = torch.exp(logp) * valid[:, None]

    def g(x):
        (w1, b1), (w2, b2), (w3, b3) = weights
        a1 = F.conv2d(x, w1, b1, padding=1)
        a2 = F.conv2d(a1.clamp_min(0), w2, b2, padding=1)
        a3 = F.conv2d(a2.clamp_min(0), w3, b3, padding=1)
        e = torch.exp(a3 - a3.max(1, keepdim=True).values)
        soft = e / e.sum(1, keepdim=True)
        if embedding == "pre_relu":
            return a1, a2, soft
        return a1.clamp_min(0), a2.clamp_min(0), soft

    terms = {"ce": ce}
    total = ce
    for level, (pred, ref, lam) in enumerate(zip(g(probs), g(onehot), lambdas), start=1):
        summed = ((pred - ref).abs() * valid[:, None]).sum()
        value = summed if reduction == "sum" else summed / (pred.shape[1] * n_valid)
        terms[f"edge_l{level}"] = value
        total = total + lam * value
    return total, terms


def g_weights64(net):
    return [(m.weight.detach().double(), m.bias.detach().double()) for m in (net.conv1, net.conv2, net.conv3)]


class TinySegNet(nn.Module):
    """A one-conv "segmentation net" with logits at stride 2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, stride=2, padding=1)

    def forward(self, images):
        return SegOutput(logits=self.conv(images), output_stride=2)


def test_training_step_gradients_match_float64_reference_and_g_stays_frozen():
    torch.manual_seed(0)
    model = TinySegNet()
    images = torch.randn(2, 3, 10, 12)
    labels = labels_with_void()
    net = strong_edge_net(1)
    lambdas = (4.0, 2.0, 1.0)
    loss = SemedaLoss(edge_net=net, lambda1=lambdas[0], lambda2=lambdas[1], lambda3=lambdas[2], num_classes=C)
    g_before = {k: v.clone() for k, v in loss.edge_net.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    weight_before = model.conv.weight.detach().clone()
    bias_before = model.conv.bias.detach().clone()

    loss.train()
    out = loss(model(images), labels)
    optimizer.zero_grad()
    out.total.backward()
    grads = (model.conv.weight.grad.clone(), model.conv.bias.grad.clone())
    optimizer.step()

    # independent float64 recomputation of the same step
    w64 = weight_before.double().requires_grad_(True)
    b64 = bias_before.double().requires_grad_(True)
    logits64 = F.conv2d(images.double(), w64, b64, stride=2, padding=1)
    ref_total, ref_terms = reference_semeda(logits64, labels, g_weights64(net), lambdas)
    ref_gw, ref_gb = torch.autograd.grad(ref_total, (w64, b64))

    assert grads[0].abs().max() > 0 and grads[1].abs().max() > 0
    torch.testing.assert_close(grads[0].double(), ref_gw, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[1].double(), ref_gb, rtol=1e-4, atol=1e-6)
    assert float(out.terms["loss"]) == pytest.approx(float(ref_total.detach()), rel=1e-5)
    for key, value in ref_terms.items():
        assert float(out.terms[key]) == pytest.approx(float(value.detach()), rel=1e-5), key
    # the edge terms matter: the gradient differs from the CE-only gradient
    logits64 = F.conv2d(images.double(), w64, b64, stride=2, padding=1)
    ce_grad = torch.autograd.grad(reference_semeda(logits64, labels, g_weights64(net), (0, 0, 0))[0], w64)[0]
    assert (ref_gw - ce_grad).abs().max() > 0.05 * ref_gw.abs().max()

    # g: bit-identical, no gradients, not trainable, still in eval mode; the model moved
    for key, value in loss.edge_net.state_dict().items():
        assert torch.equal(value, g_before[key]), key
    assert all(p.grad is None and not p.requires_grad for p in loss.edge_net.parameters())
    assert not loss.edge_net.training and loss.training
    assert not torch.equal(model.conv.weight, weight_before)
    # the module passed in is a copy's source: not frozen in place
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("reduction,embedding", [("mean", "pre_relu"), ("sum", "post_relu"), ("sum", "pre_relu")])
def test_each_level_matches_float64_reference(reduction, embedding):
    torch.manual_seed(3)
    logits = torch.randn(2, C, 5, 6)
    labels = labels_with_void(2)
    net = strong_edge_net(2)
    loss = SemedaLoss(edge_net=net, lambda1=0.5, lambda2=1.5, lambda3=3.0, reduction=reduction, embedding=embedding)
    out = loss(SegOutput(logits=logits), labels)
    ref_total, ref_terms = reference_semeda(logits.double(), labels, g_weights64(net), (0.5, 1.5, 3.0),
                                            reduction, embedding)
    for key, value in ref_terms.items():
        assert float(out.terms[key]) == pytest.approx(float(value), rel=1e-5), key
    assert float(out.total) == pytest.approx(float(ref_total), rel=1e-5)


def test_semeda_gradcheck_float64():
    torch.manual_seed(4)
    logits = torch.randn(1, C, 3, 4, dtype=torch.float64, requires_grad=True)
    labels = labels_with_void(4, b=1, h=6, w=8)
    loss = SemedaLoss(edge_net=strong_edge_net(4), lambda1=1.0, lambda2=1.0, lambda3=1.0)
    assert torch.autograd.gradcheck(lambda z: loss(SegOutput(logits=z), labels).total, (logits,))


# ------------------------------------------------------------------------- numpy reference of Sobel
def np_sobel(maps):
    """``(B, K, H, W)`` -> G_x, G_y by explicit shifts of the edge-replicated maps."""
    p = np.pad(maps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = maps.shape[-2:]

    def at(dy, dx):  # the neighbour at (y + dy, x + dx)
        return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    gx = (at(-1, 1) - at(-1, -1)) + 2 * (at(0, 1) - at(0, -1)) + (at(1, 1) - at(1, -1))
    gy = (at(1, -1) - at(-1, -1)) + 2 * (at(1, 0) - at(-1, 0)) + (at(1, 1) - at(-1, 1))
    return gx, gy


def reference_sobel(logits, labels, mode, reduction):
    logits = logits.astype(np.float64)
    b, c, h, w = logits.shape
    big_h, big_w = labels.shape[1:]
    up = np.einsum("yi,bcij,xj->bcyx", bilinear_matrix(big_h, h), logits, bilinear_matrix(big_w, w))
    e = np.exp(up - up.max(1, keepdims=True))
    valid = labels != V
    probs = e / e.sum(1, keepdims=True) * valid[:, None]
    onehot = np.stack([(labels == k) for k in range(c)], 1).astype(np.float64)
    fx, fy = np_sobel(probs)
    tx, ty = np_sobel(onehot)
    if mode == "components":
        diff = np.concatenate([np.abs(fx - tx), np.abs(fy - ty)], 1)
    else:
        diff = np.abs(np.sqrt(fx ** 2 + fy ** 2 + 1e-8) - np.sqrt(tx ** 2 + ty ** 2 + 1e-8))
    summed = (diff * valid[:, None]).sum()
    return summed if reduction == "sum" else summed / (diff.shape[1] * valid.sum())


@pytest.mark.parametrize("mode", ["components", "magnitude"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sobel_matches_numpy_reference(mode, reduction):
    torch.manual_seed(5)
    logits = torch.randn(2, C, 5, 6) * 3
    labels = labels_with_void(5)
    out = SobelLoss(lambda1=2.0, mode=mode, reduction=reduction)(SegOutput(logits=logits), labels)
    ref = reference_sobel(logits.numpy(), labels.numpy(), mode, reduction)
    assert float(out.terms["sobel"]) == pytest.approx(ref, rel=1e-5)
    ce = pixel_cross_entropy(logits, labels)
    assert float(out.total) == pytest.approx(float(ce) + 2.0 * ref, rel=1e-5)


def test_sobel_border_gives_no_response_and_gradcheck():
    # a map that is constant up to the border: replicate padding -> zero responses (zero padding
    # would give |G| up to 4 on the border)
    flat = torch.full((1, 2, 5, 6), 0.7)
    assert sobel_responses(flat).abs().max() < 1e-6
    ramp = torch.arange(6.0).repeat(5, 1)[None, None]  # x-ramp: G_x = 8 inside, 4 at the left/right border
    gx, gy = sobel_responses(ramp)[0]
    assert gy.abs().max() < 1e-6
    assert gx[:, 1:-1].tolist() == [[8.0] * 4] * 5 and gx[:, 0].tolist() == [4.0] * 5 and gx[:, -1].tolist() == [4.0] * 5
    z = torch.randn(1, C, 3, 4, dtype=torch.float64, requires_grad=True)
    target = labels_with_void(6, b=1, h=6, w=8)
    for mode in ("components", "magnitude"):
        loss = SobelLoss(lambda1=1.0, mode=mode)
        assert torch.autograd.gradcheck(lambda t: loss(SegOutput(logits=t), target).total, (z,))


# ------------------------------------------------------------------------- reductions, void, lambda = 0
CHANNELS = {"edge_l1": 16, "edge_l2": 32, "edge_l3": 2}


def test_sum_equals_mean_times_channels_times_non_void_pixels():
    torch.manual_seed(6)
    logits = torch.randn(2, C, 5, 6)
    labels = labels_with_void(6)
    n_valid = int((labels != V).sum())
    assert n_valid < labels.numel()
    net = strong_edge_net(6)
    mean = SemedaLoss(edge_net=net, reduction="mean")(SegOutput(logits=logits), labels).terms
    summed = SemedaLoss(edge_net=net, reduction="sum")(SegOutput(logits=logits), labels).terms
    assert torch.equal(mean["ce"], summed["ce"])  # CE is a mean either way
    for key, channels in CHANNELS.items():
        assert float(summed[key]) == pytest.approx(float(mean[key]) * channels * n_valid, rel=1e-5)
    for mode, channels in (("components", 2 * C), ("magnitude", C)):
        m = SobelLoss(mode=mode, reduction="mean")(SegOutput(logits=logits), labels).terms["sobel"]
        s = SobelLoss(mode=mode, reduction="sum")(SegOutput(logits=logits), labels).terms["sobel"]
        assert float(s) == pytest.approx(float(m) * channels * n_valid, rel=1e-5)


def test_void_pixels_do_not_contribute():
    torch.manual_seed(7)
    labels = labels_with_void(7)
    void = (labels == V)[:, None].expand(-1, C, -1, -1)
    logits = torch.randn(2, C, 10, 12)  # full resolution: one logit vector per label pixel
    changed = torch.where(void, torch.randn_like(logits) * 10, logits)
    assert not torch.equal(changed, logits)
    losses = [SemedaLoss(edge_net=strong_edge_net(7), lambda3=1.0), SobelLoss(), SobelLoss(mode="magnitude")]
    for loss in losses:
        a = loss(SegOutput(logits=logits), labels)
        b = loss(SegOutput(logits=changed), labels)
        for key in a.terms:
            assert torch.equal(a.terms[key], b.terms[key]), (type(loss).__name__, key)
        z = logits.clone().requires_grad_(True)
        loss(SegOutput(logits=z), labels).total.backward()
        assert z.grad[void].abs().max() == 0 and z.grad[~void].abs().max() > 0


def test_all_void_batch_gives_zero_not_nan():
    logits = torch.randn(1, C, 4, 4, requires_grad=True)
    labels = torch.full((1, 4, 4), V)
    for loss in (SemedaLoss(edge_net=strong_edge_net()), SobelLoss()):
        out = loss(SegOutput(logits=logits), labels)
        assert float(out.total.detach()) == 0.0
        out.total.backward()
        assert torch.isfinite(logits.grad).all()


def test_zero_lambdas_give_exactly_ce_and_still_report_terms():
    torch.manual_seed(8)
    logits = torch.randn(2, C, 5, 6, requires_grad=True)
    labels = labels_with_void(8)
    ce = pixel_cross_entropy(logits, labels)
    out = SemedaLoss(edge_net=strong_edge_net(8), lambda1=0, lambda2=0, lambda3=0)(SegOutput(logits=logits), labels)
    assert torch.equal(out.total, ce) and torch.equal(out.terms["ce"], ce.detach())
    assert all(float(out.terms[k]) > 0 for k in CHANNELS)
    out_sobel = SobelLoss(lambda1=0)(SegOutput(logits=logits), labels)
    assert torch.equal(out_sobel.total, ce) and float(out_sobel.terms["sobel"]) > 0
    # lambda3 = 0 (the default) still reports edge_l3, and its value equals the lambda3 > 0 one
    with_l3 = SemedaLoss(edge_net=strong_edge_net(8), lambda3=2.0)(SegOutput(logits=logits), labels)
    without = SemedaLoss(edge_net=strong_edge_net(8))(SegOutput(logits=logits), labels)
    assert torch.equal(with_l3.terms["edge_l3"], without.terms["edge_l3"])
    assert float(with_l3.terms["loss"]) == pytest.approx(float(without.terms["loss"]) + 2.0 * float(without.terms["edge_l3"]), rel=1e-6)


class TinyAuxSegNet(nn.Module):
    """Logits at stride 2 from ``main``, plus ``aux_logits`` from a head of its own (``aux``), as an
    auxiliary head that nothing but the loss reads."""

    def __init__(self):
        super().__init__()
        self.main = nn.Conv2d(3, C, 3, stride=2, padding=1)
        self.aux = nn.Conv2d(3, C, 3, stride=2, padding=1)

    def forward(self, images):
        return SegOutput(logits=self.main(images), aux_logits=self.aux(images), output_stride=2)


def _ce64(logits64, labels):
    """float64 CE of the float64 reference (the SEMEDA reference with every lambda 0)."""
    return reference_semeda(logits64, labels, g_weights64(strong_edge_net()), (0, 0, 0))[0]


@pytest.mark.parametrize("name", ["semeda", "sobel"])
def test_aux_logits_get_the_ce_baselines_auxiliary_term(name):
    # the PPCE baseline (loss=ce) trains OCR models with 1.0 x CE(logits) + 0.4 x CE(aux_logits); the
    # method's loss must add the same auxiliary term, so that with its edge weights at 0 it *is* CE
    torch.manual_seed(21)
    model = TinyAuxSegNet()
    images = torch.randn(2, 3, 10, 12)
    labels = labels_with_void(21)
    zero = {"edge_net": strong_edge_net(21), "lambda1": 0, "lambda2": 0, "lambda3": 0} if name == "semeda" \
        else {"lambda1": 0}
    out = build_loss(name, **zero)(model(images), labels)
    out.total.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without a gradient (DDP: unused parameters): {unused}"
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    # independent float64 recomputation: 1.0 * CE(main) + 0.4 * CE(aux)
    params64 = {n: p.detach().double().requires_grad_(True) for n, p in model.named_parameters()}
    main64 = F.conv2d(images.double(), params64["main.weight"], params64["main.bias"], stride=2, padding=1)
    aux64 = F.conv2d(images.double(), params64["aux.weight"], params64["aux.bias"], stride=2, padding=1)
    ce_main, ce_aux = _ce64(main64, labels), _ce64(aux64, labels)
    ref_total = 1.0 * ce_main + 0.4 * ce_aux
    ref_grads = torch.autograd.grad(ref_total, list(params64.values()))
    ref_total, ce_main, ce_aux = (float(v.detach()) for v in (ref_total, ce_main, ce_aux))
    assert float(out.total.detach()) == pytest.approx(ref_total, rel=1e-6)
    assert float(out.terms["loss"]) == pytest.approx(ref_total, rel=1e-6)
    assert float(out.terms["ce"]) == pytest.approx(ce_main, rel=1e-6)
    assert float(out.terms["loss_aux"]) == pytest.approx(ce_aux, rel=1e-6)
    for (n, g), ref in zip(grads.items(), ref_grads):
        assert g.abs().max() > 0, n  # the aux head is trained, as under loss=ce
        torch.testing.assert_close(g.double(), ref, rtol=1e-5, atol=1e-8, msg=n)

    # and the whole thing equals the CE loss the baseline trains with, term for term
    model.zero_grad()
    ce_out = build_loss("ce")(model(images), labels)
    assert torch.equal(out.total, ce_out.total) and torch.equal(out.terms["loss_aux"], ce_out.terms["loss_aux"])


@pytest.mark.parametrize("name", ["semeda", "sobel"])
def test_on_hrnet_ocr_zero_edge_weights_train_exactly_as_the_ce_baseline(name):
    from seglab.models import build_model

    torch.manual_seed(23)
    model = build_model("hrnet_w18_small_v1_ocr", C, ocr_mid_channels=16, ocr_key_channels=8, ocr_dropout=0.0)
    images = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, C, (2, 32, 32))
    out = model(images)
    assert out.aux_logits is not None
    zero = {"edge_net": strong_edge_net(23), "lambda1": 0, "lambda2": 0, "lambda3": 0} if name == "semeda" \
        else {"lambda1": 0}
    params = [p for p in model.parameters() if p.requires_grad]
    method = build_loss(name, **zero)(out, labels)
    baseline = build_loss("ce")(out, labels)
    assert torch.equal(method.total, baseline.total)
    g_method = torch.autograd.grad(method.total, params, retain_graph=True)
    g_base = torch.autograd.grad(baseline.total, params)
    for n, a, b in zip([n for n, p in model.named_parameters() if p.requires_grad], g_method, g_base):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=n)


def test_aux_weights_are_options_and_the_edge_term_stays_on_the_main_logits():
    torch.manual_seed(22)
    logits = torch.randn(2, C, 5, 6)
    aux = torch.randn(2, C, 5, 6, requires_grad=True)
    labels = labels_with_void(22)
    weights = {"main_weight": 0.7, "aux_weight": 0.2}
    lambdas = (4.0, 2.0, 1.0)
    net = strong_edge_net(22)
    loss = SemedaLoss(edge_net=net, lambda1=lambdas[0], lambda2=lambdas[1], lambda3=lambdas[2], **weights)
    out = loss(SegOutput(logits=logits, aux_logits=aux), labels)
    ref_total, ref_terms = reference_semeda(logits.double(), labels, g_weights64(net), lambdas)
    edge = float(ref_total - ref_terms["ce"])  # the edge terms of the main logits alone
    ce_aux = float(_ce64(aux.detach().double(), labels))
    assert float(out.total.detach()) == pytest.approx(0.7 * float(ref_terms["ce"]) + 0.2 * ce_aux + edge, rel=1e-5)
    # d total / d aux = 0.2 x d CE(aux) / d aux: no edge term on the aux logits
    out.total.backward()
    aux64 = aux.detach().double().requires_grad_(True)
    torch.testing.assert_close(aux.grad.double(), 0.2 * torch.autograd.grad(_ce64(aux64, labels), aux64)[0],
                               rtol=1e-5, atol=1e-9)
    sobel = SobelLoss(lambda1=0, **weights)(SegOutput(logits=logits, aux_logits=aux), labels)
    assert float(sobel.total.detach()) == pytest.approx(0.7 * float(ref_terms["ce"]) + 0.2 * ce_aux, rel=1e-5)
    # without aux_logits: main_weight x CE (+ edge terms), no loss_aux
    plain = SemedaLoss(edge_net=net, lambda1=0, lambda2=0, lambda3=0, main_weight=0.5)(SegOutput(logits=logits),
                                                                                      labels)
    assert "loss_aux" not in plain.terms and float(plain.total) == pytest.approx(0.5 * float(ref_terms["ce"]),
                                                                                 rel=1e-6)
    with pytest.raises(ValueError, match="aux_logits have 3 classes but logits have 4"):
        loss(SegOutput(logits=logits, aux_logits=aux[:, :3]), labels)
    one_line(ConfigError, lambda: build_loss("semeda", aux_weight=-1), r"^loss\.aux_weight must be a finite number")
    one_line(ConfigError, lambda: build_loss("sobel", main_weight=float("nan")), r"^loss\.main_weight must be")


def test_class_weights_pass_through_to_ce():
    torch.manual_seed(9)
    logits = torch.randn(2, C, 5, 6)
    labels = labels_with_void(9)
    weights = [1.0, 2.0, 0.5, 3.0]
    out = SemedaLoss(edge_net=strong_edge_net(), class_weights=weights)(SegOutput(logits=logits), labels)
    assert torch.equal(out.terms["ce"], pixel_cross_entropy(logits, labels, class_weights=torch.tensor(weights)))
    assert not torch.equal(out.terms["ce"], pixel_cross_entropy(logits, labels))


# ------------------------------------------------------------------------- edge net handling and errors
def one_line(exc_type, call, pattern):
    with pytest.raises(exc_type, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"lambda1": -1}, r"^loss\.lambda1 must be a number >= 0 \(got -1"),
    ({"lambda2": "x"}, r"^loss\.lambda2 must be a number >= 0 \(got 'x'"),
    ({"lambda3": float("nan")}, r"^loss\.lambda3 must be a number >= 0 \(got nan"),
    ({"lambda1": True}, r"^loss\.lambda1 must be a number >= 0"),
    ({"reduction": "max"}, r"^loss\.reduction must be one of mean, sum \(got 'max'\)"),
    ({"embedding": "relu"}, r"^loss\.embedding must be one of post_relu, pre_relu"),
    ({"ignore_index": "255"}, r"^loss\.ignore_index must be an integer"),
    ({"num_classes": 1}, r"^loss\.num_classes must be null or an integer >= 2"),
    ({"class_weights": "voc"}, r"^loss\.class_weights must be"),
    ({"edge_net": 3}, r"^loss\.edge_net must be a path to a saved edge net, an nn\.Module, auto or a pre-training"),
])
def test_bad_semeda_options_are_one_line_config_errors(kwargs, pattern):
    one_line(ConfigError, lambda: build_loss("semeda", **kwargs), pattern)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"lambda1": -0.5}, r"^loss\.lambda1 must be a number >= 0 \(got -0\.5"),
    ({"mode": "gradient"}, r"^loss\.mode must be one of components, magnitude"),
    ({"reduction": None}, r"^loss\.reduction must be one of mean, sum"),
])
def test_bad_sobel_options_are_one_line_config_errors(kwargs, pattern):
    one_line(ConfigError, lambda: build_loss("sobel", **kwargs), pattern)


def test_class_count_mismatch_names_the_file_and_both_counts(tmp_path):
    path = tmp_path / "edge_cityscapes.pt"
    save_edge_net(path, SemedaEdgeNet(5), {"class_names": ["road", "sidewalk", "building", "wall", "fence"]})
    message = one_line(ConfigError, lambda: build_loss("semeda", edge_net=str(path), num_classes=4),
                       r"^loss\.edge_net ")
    assert message.startswith(f"loss.edge_net {path} was trained for 5 classes (road, sidewalk, building, wall, fence) "
                              "but the data set has 4; ")
    message = one_line(ConfigError, lambda: SemedaLoss(edge_net=SemedaEdgeNet(5), num_classes=21),
                       r"was trained for 5 classes but the data set has 21")
    # without num_classes the check happens on the first call, against the logits
    loss = build_loss("semeda", edge_net=str(path))
    one_line(ConfigError, lambda: loss(SegOutput(logits=torch.randn(1, 4, 3, 3)), torch.zeros(1, 3, 3, dtype=torch.long)),
             r"trained for 5 classes but the model predicts 4")
    one_line(ConfigError, lambda: build_loss("semeda", edge_net=str(tmp_path / "missing.pt")), r"^loss\.edge_net")


def test_auto_builds_but_refuses_to_run_until_filled_in(tmp_path):
    loss = build_loss("semeda", ignore_index=255, num_classes=C)  # what validation does
    assert loss.edge_net is None
    logits = torch.randn(1, C, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    one_line(RuntimeError, lambda: loss(SegOutput(logits=logits), labels), r"loss\.edge_net=auto")
    path = tmp_path / "edge.pt"
    net = strong_edge_net(10)
    save_edge_net(path, net, {"class_names": list("abcd")})
    loss.set_edge_net(str(path))
    assert loss.edge_net_source == str(path) and loss.edge_net_meta["class_names"] == list("abcd")
    direct = SemedaLoss(edge_net=net)
    assert torch.equal(loss(SegOutput(logits=logits), labels).total, direct(SegOutput(logits=logits), labels).total)
    with pytest.raises(ConfigError, match="was trained for 3 classes"):
        loss.set_edge_net(SemedaEdgeNet(3))
    # a mapping is auto with the platform's pre-training recipe: kept, not interpreted
    recipe = build_loss("semeda", edge_net={"steps": 300, "lr": 0.001}, num_classes=C)
    assert recipe.edge_net is None and recipe.edge_net_recipe == {"steps": 300, "lr": 0.001}
    one_line(RuntimeError, lambda: recipe(SegOutput(logits=logits), labels), r"loss\.edge_net=auto")


def test_edge_net_is_a_frozen_submodule_that_follows_the_loss():
    net = strong_edge_net(11)
    loss = SemedaLoss(edge_net=net)
    assert dict(loss.named_modules())["edge_net"] is loss.edge_net
    assert loss.edge_net is not net  # the loss holds its own copy
    assert sum(p.numel() for p in loss.parameters()) == sum(p.numel() for p in net.parameters())
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert loss.training and not loss.edge_net.training
    loss.to(torch.float64)  # .to() reaches g (the same path moves it to a device)
    assert all(p.dtype == torch.float64 for p in loss.edge_net.parameters())
    # an edge net filled in after .to(device) is moved to the loss's device (meta stands in for a GPU)
    moved = SemedaLoss(edge_net=net).to("meta")
    assert next(moved.edge_net.parameters()).device.type == "meta"
    moved.set_edge_net(strong_edge_net(12))
    assert next(moved.edge_net.parameters()).device.type == "meta"


def test_registered_names_and_defaults():
    sem = build_loss("semeda")
    assert isinstance(sem, SemedaLoss) and sem.lambdas == (4.0, 2.0, 0.0) and sem.reduction == "mean"
    sob = build_loss("sobel")
    assert isinstance(sob, SobelLoss) and sob.lambda1 == 1.0 and sob.mode == "components"
    ce = build_loss("ce")  # the PPCE baseline's auxiliary weighting, same defaults
    assert (sem.aux_weight, sem.main_weight) == (sob.aux_weight, sob.main_weight) == (ce.aux_weight, ce.main_weight) \
        == (0.4, 1.0)
    one_line(ConfigError, lambda: build_loss("semeda", lambda4=1), r"loss 'semeda' has no option loss\.lambda4")


def test_edge_terms_stay_float32_under_autocast():
    torch.manual_seed(13)
    logits = torch.randn(2, C, 5, 6).bfloat16()  # what a model under bf16 autocast returns
    labels = labels_with_void(13)
    loss = SemedaLoss(edge_net=strong_edge_net(13), lambda3=1.0)
    reference = loss(SegOutput(logits=logits.float()), labels).terms
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = loss(SegOutput(logits=logits), labels).terms
    for key in CHANNELS:  # bf16 convolutions in g would be off by ~1e-2 relative
        assert terms[key].dtype == torch.float32
        assert float(terms[key]) == pytest.approx(float(reference[key]), rel=1e-6), key
