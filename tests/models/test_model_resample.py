"""resample(x, offsets): pixel-exact identity and shifts, and agreement with F.grid_sample."""
import pytest
import torch
import torch.nn.functional as F

from seglab.models.resample import resample


def grid_sample_reference(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The independent reference: grid_sample on identity grid + offsets (align_corners=True)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, dtype=offsets.dtype)
    xs = torch.linspace(-1, 1, w, dtype=offsets.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0) + offsets.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_grid_sample_on_random_offsets(dtype, atol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 23, 37, generator=g, dtype=torch.float64)
    # up to 0.7 of the image: many samples fall outside and are border-clamped
    offsets = (torch.rand(2, 2, 23, 37, generator=g, dtype=torch.float64) * 2 - 1) * 0.7
    expected = grid_sample_reference(x, offsets)  # float64 reference (float32 grid_sample is itself ~1e-5 off)
    out = resample(x.to(dtype), offsets.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, atol=atol, rtol=0)
    if dtype == torch.float32:  # and the float32 grid_sample agrees within its own rounding
        torch.testing.assert_close(out, grid_sample_reference(x.float(), offsets.float()), atol=3e-5, rtol=0)


def test_gradients_match_grid_sample():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 13, generator=g, dtype=torch.float64)
    offsets = (torch.rand(2, 2, 9, 13, generator=g, dtype=torch.float64) * 2 - 1) * 0.5
    weights = torch.randn(2, 3, 9, 13, generator=g, dtype=torch.float64)
    grads = []
    for fn in (resample, grid_sample_reference):
        xi, oi = x.clone().requires_grad_(), offsets.clone().requires_grad_()
        (fn(xi, oi) * weights).sum().backward()
        grads.append((xi.grad, oi.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-10, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-8, rtol=0)
    assert grads[0][1].abs().sum() > 0  # offsets do receive gradient


def test_gradcheck():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    offsets = ((torch.rand(1, 2, 5, 6, generator=g, dtype=torch.float64) * 2 - 1) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(resample, (x, offsets))


def test_zero_offsets_give_exact_identity():
    x = torch.randn(2, 19, 64, 128) * 1e3  # at 256x512 grid_sample is off by up to 2e-4
    assert torch.equal(resample(x, torch.zeros(2, 2, 64, 128)), x)
    x = torch.randn(1, 3, 256, 512)
    assert torch.equal(resample(x, torch.zeros(1, 2, 256, 512)), x)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_whole_pixel_shift_in_x_is_exact_and_clamped_at_the_right_border(k):
    h, w = 6, 17  # W - 1 = 16, so o_x = 2k/16 and o_x * (W-1)/2 = k are exact in float
    x = torch.randn(2, 4, h, w)
    offsets = torch.zeros(2, 2, h, w)
    offsets[:, 0] = 2 * k / (w - 1)
    out = resample(x, offsets)
    assert torch.equal(out[..., : w - k], x[..., k:])  # out[..., j] == x[..., j + k]
    assert torch.equal(out[..., w - k:], x[..., -1:].expand(-1, -1, -1, k))  # border-clamped


def test_whole_pixel_shift_in_y_upwards_clamps_at_the_top():
    h, w = 9, 5  # H - 1 = 8
    x = torch.randn(1, 2, h, w)
    offsets = torch.zeros(1, 2, h, w)
    offsets[:, 1] = -2 * 2 / (h - 1)  # two pixels up
    out = resample(x, offsets)
    assert torch.equal(out[:, :, 2:], x[:, :, :-2])
    assert torch.equal(out[:, :, :2], x[:, :, :1].expand(-1, -1, 2, -1))


def test_half_pixel_offset_averages_neighbours():
    x = torch.tensor([[[[0.0, 2.0, 4.0, 10.0, 20.0]]]])  # (1, 1, 1, 5)
    offsets = torch.zeros(1, 2, 1, 5)
    offsets[:, 0] = 0.5 * 2 / (5 - 1)  # half a pixel to the right
    assert torch.equal(resample(x, offsets), torch.tensor([[[[1.0, 3.0, 7.0, 15.0, 20.0]]]]))


def test_runs_on_meta_and_rejects_bad_shapes():
    out = resample(torch.empty(2, 3, 8, 8, device="meta"), torch.empty(2, 2, 8, 8, device="meta"))
    assert out.shape == (2, 3, 8, 8) and out.device.type == "meta"
    with pytest.raises(ValueError, match="offsets"):
        resample(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="do not match"):
        resample(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 4, 4))
