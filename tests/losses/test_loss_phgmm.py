"""PHGMM loss pieces against independent references: numerical integration (scipy), a float64 numpy
Monte-Carlo estimate of the true GMM KL, a float64 soft-IoU recomputation and hand cases."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from scipy.special import logsumexp

from seglab.errors import ConfigError
from seglab.losses import PHGMMLoss, build_loss, gaussian_kl_standard, gmm_kl, soft_iou_loss
from seglab.models.outputs import SegOutput


# ------------------------------------------------------------------------- independent references
def normal_pdf(z, mu, var):
    return math.exp(-0.5 * (z - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def mixture_pdf(z, pi, mu, var):
    """1-D mixture density; ``z`` scalar, pi / mu / var sequences of length K."""
    return sum(p * normal_pdf(z, m, v) for p, m, v in zip(pi, mu, var))


def kl_quad_1d(q, p, lo=-30.0, hi=30.0):
    """KL(q || p) = int q log(q / p) for 1-D densities q, p (callables), by adaptive quadrature."""
    def integrand(z):
        qz = q(z)
        return 0.0 if qz < 1e-300 else qz * (math.log(qz) - math.log(p(z)))

    return integrate.quad(integrand, lo, hi, limit=400, points=[0.0])[0]


def np_gmm_logpdf(z, pi, mu, var):
    """log sum_k pi_k N(z; mu_k, diag var_k) for points z (N, D); pi (K,), mu / var (K, D)."""
    log_n = -0.5 * (((z[:, None, :] - mu[None]) ** 2) / var[None] + np.log(2 * np.pi * var[None])).sum(-1)
    return logsumexp(np.log(pi)[None] + log_n, axis=1)


def np_gmm_kl_mc(q, p, n=200_000, seed=0):
    """Reference KL(q || p) by plain Monte Carlo in float64 numpy: (estimate, standard error)."""
    rng = np.random.default_rng(seed)
    pi, mu, var = q
    k = rng.choice(len(pi), size=n, p=pi)
    z = mu[k] + np.sqrt(var[k]) * rng.standard_normal((n, mu.shape[1]))
    ratio = np_gmm_logpdf(z, *q) - np_gmm_logpdf(z, *p)
    return ratio.mean(), ratio.std(ddof=1) / math.sqrt(n)


def np_bound(q, p):
    """Matched-component bound written out in numpy (float64)."""
    (pi, mu, var), (pi_p, mu_p, var_p) = q, p
    kl_pi = np.sum(pi * np.log(pi / pi_p))
    kl_k = 0.5 * np.sum(np.log(var_p / var) + (var + (mu - mu_p) ** 2) / var_p - 1.0, axis=1)
    return kl_pi + np.sum(pi * kl_k)


def random_mixture(rng, k=3, d=4, spread=1.5):
    pi = rng.dirichlet(np.ones(k))
    return pi, rng.normal(0.0, spread, (k, d)), np.exp(rng.normal(0.0, 0.5, (k, d)))


def to_torch(mix):
    """numpy (pi (K,), mu (K, D), var (K, D)) -> torch (pi (1, K), mu (1, K, D), logvar (1, K, D)) float64."""
    pi, mu, var = mix
    return (torch.tensor(pi)[None], torch.tensor(mu)[None], torch.tensor(np.log(var))[None])


# ------------------------------------------------------------------------------------------- l_g
@pytest.mark.parametrize("mu, var", [(0.7, 0.3), (-2.0, 4.0), (0.0, 1.0)])
def test_standard_gaussian_kl_matches_quadrature_1d(mu, var):
    expected = kl_quad_1d(lambda z: normal_pdf(z, mu, var), lambda z: normal_pdf(z, 0.0, 1.0))
    got = gaussian_kl_standard(torch.tensor([[mu]], dtype=torch.float64), torch.tensor([[math.log(var)]],
                                                                                        dtype=torch.float64))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-7, abs=1e-10)


def test_standard_gaussian_kl_matches_quadrature_2d():
    mu, var = (0.5, -1.2), (0.4, 2.5)

    def integrand(y, x):
        q = normal_pdf(x, mu[0], var[0]) * normal_pdf(y, mu[1], var[1])
        p = normal_pdf(x, 0.0, 1.0) * normal_pdf(y, 0.0, 1.0)
        return 0.0 if q < 1e-300 else q * math.log(q / p)

    expected = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-10, epsrel=1e-10)[0]
    got = gaussian_kl_standard(torch.tensor([mu], dtype=torch.float64), torch.tensor([var]).log().double())
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.5 * (0.25 + 1.44 + 0.4 + 2.5 - 2 - math.log(0.4) - math.log(2.5)), rel=1e-6)


def test_gaussian_kl_between_diagonal_gaussians_matches_quadrature_2d():
    """gmm_kl with K = 1 is the exact KL of two diagonal Gaussians (dblquad reference)."""
    mq, vq, mp, vp = (0.3, -0.8), (0.5, 1.7), (-0.4, 0.2), (1.3, 0.6)

    def integrand(y, x):
        q = normal_pdf(x, mq[0], vq[0]) * normal_pdf(y, mq[1], vq[1])
        p = normal_pdf(x, mp[0], vp[0]) * normal_pdf(y, mp[1], vp[1])
        return 0.0 if q < 1e-300 else q * math.log(q / p)

    expected = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-10, epsrel=1e-10)[0]
    one = torch.ones(1, 1, dtype=torch.float64)
    args = [torch.tensor([[m]], dtype=torch.float64) for m in (mq, vq, mp, vp)]
    for estimator in ("bound", "mc"):
        got = gmm_kl(one, args[0], args[1].log(), one, args[2], args[3].log(), estimator=estimator, samples=200_000,
                     generator=torch.Generator().manual_seed(1))
        tol = 1e-9 if estimator == "bound" else 0.02
        assert got.item() == pytest.approx(expected, abs=tol), estimator


# ------------------------------------------------------------------------------------------- l_z
def test_gmm_kl_1d_against_quadrature():
    """K = 2 in one dimension: true KL by quadrature; bound >= it, MC agrees with it."""
    q = ([0.3, 0.7], [-1.0, 1.5], [0.5, 0.8])
    p = ([0.6, 0.4], [-0.5, 2.0], [1.0, 0.3])
    exact = kl_quad_1d(lambda z: mixture_pdf(z, *q), lambda z: mixture_pdf(z, *p))
    tq = (torch.tensor([q[0]], dtype=torch.float64), torch.tensor([q[1]]).double()[..., None],
          torch.tensor([q[2]]).double().log()[..., None])
    tp = (torch.tensor([p[0]], dtype=torch.float64), torch.tensor([p[1]]).double()[..., None],
          torch.tensor([p[2]]).double().log()[..., None])
    bound = gmm_kl(*tq, *tp).item()
    mc = gmm_kl(*tq, *tp, estimator="mc", samples=400_000, generator=torch.Generator().manual_seed(0)).item()
    assert bound > exact + 0.05  # a real gap: the bound is not the KL
    assert mc == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bound_is_above_monte_carlo_reference(seed):
    rng = np.random.default_rng(seed)
    q, p = random_mixture(rng), random_mixture(rng)
    ref, se = np_gmm_kl_mc(q, p, seed=100 + seed)
    bound = gmm_kl(*to_torch(q), *to_torch(p), estimator="bound")
    assert bound.shape == (1,)
    assert bound.item() == pytest.approx(np_bound(q, p), rel=1e-10)
    assert bound.item() >= ref - 4 * se


def test_bound_equals_exact_gaussian_kl_for_one_component():
    rng = np.random.default_rng(5)
    q, p = random_mixture(rng, k=1, d=6), random_mixture(rng, k=1, d=6)
    (_, mq, vq), (_, mp, vp) = q, p
    exact = 0.5 * np.sum(np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)
    assert gmm_kl(*to_torch(q), *to_torch(p)).item() == pytest.approx(exact, rel=1e-12)
    ref, se = np_gmm_kl_mc(q, p, seed=9)
    assert abs(exact - ref) < 4 * se


@pytest.mark.parametrize("seed", [0, 1])
def test_mc_estimator_is_unbiased(seed):
    rng = np.random.default_rng(seed)
    q, p = random_mixture(rng), random_mixture(rng)
    ref, se_ref = np_gmm_kl_mc(q, p, seed=200 + seed)
    tq, tp = to_torch(q), to_torch(p)
    runs = 400
    generator = torch.Generator().manual_seed(seed)
    batch = [torch.cat([t] * runs) for t in tq], [torch.cat([t] * runs) for t in tp]  # runs independent estimates
    estimates = gmm_kl(*batch[0], *batch[1], estimator="mc", samples=25, generator=generator).numpy()
    mean, se_mc = estimates.mean(), estimates.std(ddof=1) / math.sqrt(runs)
    assert estimates.std() > 0  # they are random
    assert abs(mean - ref) < 4 * math.hypot(se_mc, se_ref)
    assert np_bound(q, p) > mean  # the bound is loose on these mixtures


def test_kl_is_zero_for_identical_mixtures():
    rng = np.random.default_rng(3)
    q = to_torch(random_mixture(rng))
    assert gmm_kl(*q, *q).item() == pytest.approx(0.0, abs=1e-12)
    assert gmm_kl(*q, *q, estimator="mc", samples=3).item() == pytest.approx(0.0, abs=1e-12)


def test_mc_estimator_gives_pi_exact_gradients():
    """The component is never sampled: for fixed noise the estimate is smooth in pi (gradcheck)."""
    rng = np.random.default_rng(4)
    q, p = to_torch(random_mixture(rng, k=3, d=2)), to_torch(random_mixture(rng, k=3, d=2))
    logits = torch.log(q[0]).clone().requires_grad_(True)

    def estimate(a):
        return gmm_kl(torch.softmax(a, dim=1), q[1], q[2], *p, estimator="mc", samples=4,
                      generator=torch.Generator().manual_seed(0))

    assert torch.autograd.gradcheck(estimate, (logits,))
    estimate(logits).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_gmm_kl_clamps_extreme_log_variances():
    pi = torch.ones(1, 1)
    mu, logvar = torch.zeros(1, 1, 2), torch.full((1, 1, 2), -200.0)  # would be exp(200) in the ratio
    assert torch.isfinite(gmm_kl(pi, mu, logvar, pi, mu + 1.0, logvar)).all()
    assert torch.isfinite(gaussian_kl_standard(mu[0], torch.full((1, 2), 500.0))).all()


def test_gmm_kl_shape_and_estimator_errors():
    q = (torch.ones(2, 1), torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="same shapes"):
        gmm_kl(*q, torch.ones(2, 1), torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="estimator must be one of bound, mc"):
        gmm_kl(*q, *q, estimator="exact")


# ------------------------------------------------------------------------------------- soft IoU
def np_soft_iou(probs, one_hot, valid, eps):
    mask = valid[:, None].astype(np.float64)
    pred, y = probs * mask, one_hot * mask
    inter = (pred * y).sum(axis=(2, 3))
    union = (pred + y - pred * y).sum(axis=(2, 3))
    return 1.0 - ((inter + eps) / (union + eps)).mean(axis=1)


def test_soft_iou_matches_float64_recomputation():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 4, 6, 5, generator=g), dim=1)
    labels = torch.randint(0, 4, (3, 6, 5), generator=g)
    valid = torch.rand(3, 6, 5, generator=g) > 0.2
    one_hot = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    got = soft_iou_loss(probs, one_hot, valid, eps=0.5)
    expected = np_soft_iou(probs.double().numpy(), one_hot.double().numpy(), valid.numpy(), 0.5)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_soft_iou_is_one_minus_iou_on_one_hot_inputs():
    # 2 classes, one 2x3 image; the last column is void (its disagreement must not count)
    pred = torch.tensor([[0, 0, 1], [1, 1, 0]])
    gt = torch.tensor([[0, 1, 0], [1, 1, 1]])
    valid = torch.tensor([[True, True, False], [True, True, False]])
    to_one_hot = lambda y: F.one_hot(y, 2).permute(2, 0, 1)[None].float()  # noqa: E731
    got = soft_iou_loss(to_one_hot(pred), to_one_hot(gt), valid[None], eps=0.0)
    # class 0: I = 1, U = 2 -> 1/2; class 1: I = 2, U = 3 -> 2/3; loss = 1 - 7/12
    assert got.item() == pytest.approx(5 / 12)


# --------------------------------------------------------------------------------------- PHGMMLoss
def make_output(num_classes=3, k=2, d=4, with_posterior=True, with_global=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 8, 8, generator=g, requires_grad=True)
    latents = {"pi": torch.softmax(torch.randn(2, k, generator=g), 1), "mu": torch.randn(2, k, d, generator=g),
               "logvar": 0.3 * torch.randn(2, k, d, generator=g)}
    if with_global:
        latents.update(g_mu=torch.randn(2, d, generator=g), g_logvar=0.3 * torch.randn(2, d, generator=g))
    if with_posterior:
        latents.update(post_pi=torch.softmax(torch.randn(2, k, generator=g), 1),
                       post_mu=torch.randn(2, k, d, generator=g), post_logvar=0.3 * torch.randn(2, k, d, generator=g))
    target = torch.randint(0, num_classes, (2, 8, 8), generator=g)
    target[0, :3] = 255
    return SegOutput(logits=logits, output_stride=1, latents=latents), target


def reference_terms(out, target, num_classes, class_mean=True):
    """Per-sample (ce, soft_iou) in float64, written independently of the loss."""
    logp = torch.log_softmax(out.logits.detach().double(), dim=1).numpy()
    t, probs = target.numpy(), np.exp(logp)
    ce, siou = [], []
    for b in range(t.shape[0]):
        valid = t[b] != 255
        picked = [-logp[b, t[b, i, j], i, j] for i, j in zip(*np.nonzero(valid))]
        ce.append(np.mean(picked) / (num_classes if class_mean else 1))
        one_hot = np.stack([(t[b] == c) & valid for c in range(num_classes)]).astype(float)
        siou.append(np_soft_iou(probs[b:b + 1], one_hot[None], valid[None], 1.0)[0])
    return np.array(ce), np.array(siou)


@pytest.mark.parametrize("class_mean", [True, False])
def test_phgmm_loss_combines_terms_per_sample(class_mean):
    out, target = make_output()
    loss = PHGMMLoss(lambda_g=1.1, lambda_z=0.4, lambda_s=0.4, ce_class_mean=class_mean)
    result = loss(out, target)
    lat = out.latents
    ce, siou = reference_terms(out, target, 3, class_mean)
    kl_g = (0.5 * (lat["g_mu"] ** 2 + lat["g_logvar"].exp() - 1 - lat["g_logvar"]).sum(1)).double().numpy()
    q = [(lat["pi"][b].double().numpy(), lat["mu"][b].double().numpy(), lat["logvar"][b].exp().double().numpy())
         for b in range(2)]
    p = [(lat["post_pi"][b].double().numpy(), lat["post_mu"][b].double().numpy(),
          lat["post_logvar"][b].exp().double().numpy()) for b in range(2)]
    kl_z = np.array([np_bound(q[b], p[b]) for b in range(2)])
    expected = np.mean(1.1 * kl_g + 0.4 * kl_z + 0.4 * (ce + siou))
    assert result.total.item() == pytest.approx(expected, rel=1e-5)
    terms = {k: v.item() for k, v in result.terms.items()}
    assert terms["ce"] == pytest.approx(ce.mean(), rel=1e-5)
    assert terms["soft_iou"] == pytest.approx(siou.mean(), rel=1e-5)
    assert terms["seg"] == pytest.approx((ce + siou).mean(), rel=1e-5)
    assert terms["kl_g"] == pytest.approx(kl_g.mean(), rel=1e-5)
    assert terms["kl_z"] == pytest.approx(kl_z.mean(), rel=1e-5)
    assert terms["loss"] == result.total.item()
    result.total.backward()
    assert out.logits.grad.abs().sum() > 0


def test_ce_class_mean_divides_by_number_of_classes():
    out, target = make_output(num_classes=5)
    with_c = PHGMMLoss(ce_class_mean=True)(out, target).terms["ce"]
    without = PHGMMLoss(ce_class_mean=False)(out, target).terms["ce"]
    assert with_c.item() == pytest.approx(without.item() / 5)


def test_no_global_latent_gives_zero_kl_g_and_mc_estimator_runs():
    out, target = make_output(with_global=False)
    result = PHGMMLoss(kl_z="mc", kl_samples=3)(out, target)
    assert result.terms["kl_g"] == 0
    lambdas_only_g = PHGMMLoss(lambda_g=1.0, lambda_z=0.0, lambda_s=0.0)(out, target)
    assert lambdas_only_g.total.item() == 0


def test_loss_errors_without_latents_or_posterior():
    out, target = make_output()
    with pytest.raises(ConfigError) as info:
        PHGMMLoss()(SegOutput(logits=out.logits, output_stride=1), target)
    assert str(info.value) == "loss=phgmm needs a model with latents (model=phgmm_*); model output has none"
    no_post, _ = make_output(with_posterior=False)
    with pytest.raises(ValueError, match=r"call model\(images, targets\) with the model in training mode"):
        PHGMMLoss()(no_post, target)
    # validation loss (loss in eval mode): l_z is left out
    loss = PHGMMLoss().eval()
    result = loss(no_post, target)
    assert "kl_z" not in result.terms
    expected = 1.1 * result.terms["kl_g"] + 0.4 * result.terms["seg"]
    assert result.total.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lambda_g=-1.0), "loss.lambda_g must be a finite number >= 0"),
    (dict(lambda_z="0.4"), "loss.lambda_z must be a finite number >= 0"),
    (dict(lambda_s=float("nan")), "loss.lambda_s must be a finite number >= 0"),
    (dict(kl_z="exact"), "loss.kl_z must be one of bound, mc (got 'exact')"),
    (dict(kl_samples=0), "loss.kl_samples must be an integer >= 1 (got 0)"),
    (dict(kl_samples=True), "loss.kl_samples must be an integer >= 1 (got True)"),
    (dict(ce_class_mean=1), "loss.ce_class_mean must be true or false"),
    (dict(soft_iou_eps=0), "loss.soft_iou_eps must be a finite number > 0"),
    (dict(ignore_index="void"), "loss.ignore_index must be an integer"),
])
def test_bad_loss_options_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        build_loss("phgmm", **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_registered_and_exported():
    assert isinstance(build_loss("phgmm"), PHGMMLoss)
    from seglab.losses import gmm_kl as exported

    assert exported is gmm_kl
