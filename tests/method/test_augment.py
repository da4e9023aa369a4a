"""Augmentations: shapes, determinism, purity and the beat/shift/crop kernels' exact behaviour."""

from __future__ import annotations

import pytest
import torch

from aclecg_core.method import augment as A

FS = 100.0


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """3 windows x 12 leads x 500 samples; lead l is a distinct non-zero ramp plus a sinusoid."""
    t = torch.arange(500, dtype=torch.float32)
    x = torch.stack([
        torch.stack([1.0 + 0.01 * (b + 1) * t + k + torch.sin(t / 7) for k in range(12)])
        for b in range(3)
    ])
    rpeaks = torch.tensor([[40, 120, 200, 290, 380, 460], [50, 150, 250, 350, -1, -1],
                           [-1, -1, -1, -1, -1, -1]], dtype=torch.int32)
    return x, rpeaks


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


RANDOM_AUGS = {
    "crop": lambda x, r, g: A.random_scale_crop(x, FS, g),
    "mask": lambda x, r, g: A.cardiac_cycle_mask(x, r, FS, g, fraction=0.4),
    "shift": lambda x, r, g: A.temporal_shift(x, FS, g, max_shift_s=1.0),
    "noise": lambda x, r, g: A.gaussian_noise(x, FS, g),
    "scale": lambda x, r, g: A.amplitude_scale(x, FS, g),
    "timeout": lambda x, r, g: A.time_out(x, FS, g, max_width_s=2.0),
    "wander": lambda x, r, g: A.baseline_wander(x, FS, g),
    "acl_view": lambda x, r, g: A.ViewPipeline("acl").view(x, r, FS, g),
    "simclr_view": lambda x, r, g: A.ViewPipeline("simclr").view(x, r, FS, g),
}


@pytest.mark.parametrize("name", sorted(RANDOM_AUGS))
def test_seeded_pure_and_shape_preserving(name: str) -> None:
    x, rpeaks = _batch()
    before = x.clone()
    aug = RANDOM_AUGS[name]
    out = aug(x, rpeaks, _gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before), "input was mutated"
    assert torch.equal(out, aug(x, rpeaks, _gen(1)))
    assert not torch.equal(out, aug(x, rpeaks, _gen(2)))
    assert not torch.equal(out, x)


def test_beat_boundaries_are_midpoints_and_edges() -> None:
    _, rpeaks = _batch()
    starts, ends = A.beat_boundaries(rpeaks, 500)
    assert starts[0].tolist() == [0, 80, 160, 245, 335, 420]
    assert ends[0].tolist() == [80, 160, 245, 335, 420, 500]
    assert starts[1].tolist()[:4] == [0, 100, 200, 300]
    assert ends[1].tolist()[:4] == [100, 200, 300, 500]
    assert starts[2].tolist() == [500] * 6


def test_mask_beats_zeroes_exactly_the_chosen_beats_in_all_leads() -> None:
    x, rpeaks = _batch()
    chosen = torch.zeros(3, 6, dtype=torch.bool)
    chosen[0, 2] = chosen[0, 5] = chosen[1, 3] = True
    chosen[2, 0] = True  # a padded beat: nothing to mask
    out = A.mask_beats(x, rpeaks, chosen)
    expected = torch.zeros(3, 500, dtype=torch.bool)
    expected[0, 160:245] = expected[0, 420:500] = expected[1, 300:500] = True
    everywhere = expected[:, None, :].expand_as(out)
    assert torch.equal(out == 0, everywhere)
    assert torch.equal(out[~everywhere], x[~everywhere])


def test_cardiac_cycle_mask_masks_whole_beats_only() -> None:
    x, rpeaks = _batch()
    out = A.cardiac_cycle_mask(x, rpeaks, FS, _gen(0), fraction=0.5)
    zero = out[:, 0] == 0
    assert torch.equal((out == 0), zero[:, None, :].expand_as(out)), "same samples in all leads"
    starts, ends = A.beat_boundaries(rpeaks, 500)
    for b, n_beats in enumerate([6, 4]):
        bounds = zip(starts[b, :n_beats], ends[b, :n_beats], strict=True)
        segments = [zero[b, s:e] for s, e in bounds]
        assert all(bool(seg.all()) or not bool(seg.any()) for seg in segments)
        assert sum(bool(seg.all()) for seg in segments) == round(0.5 * n_beats)
    assert not zero[2].any(), "a window without peaks is left unchanged"


def test_bad_rpeaks_are_rejected() -> None:
    with pytest.raises(ValueError, match="padding"):
        A.beat_boundaries(torch.tensor([[-1, 10]]), 500)
    with pytest.raises(ValueError, match="increasing"):
        A.beat_boundaries(torch.tensor([[30, 10]]), 500)


def test_shift_keeps_lead_alignment_circular_and_zero() -> None:
    x, _ = _batch()
    offsets = torch.tensor([5, -7, 0])
    circ = A.shift(x, offsets, circular=True)
    for b, s in enumerate(offsets.tolist()):
        assert torch.equal(circ[b], torch.roll(x[b], s, dims=-1))
    zero = A.shift(x, offsets, circular=False)
    assert torch.equal(zero[0, :, 5:], x[0, :, :-5]) and not zero[0, :, :5].any()
    assert torch.equal(zero[1, :, :-7], x[1, :, 7:]) and not zero[1, :, -7:].any()


def test_crop_resize_full_window_is_identity_and_half_is_interpolated() -> None:
    x, _ = _batch()
    full = A.crop_resize(x, torch.zeros(3), torch.full((3,), 500.0))
    torch.testing.assert_close(full, x)
    ramp = torch.arange(100, dtype=torch.float32).expand(1, 12, 100)
    half = A.crop_resize(ramp, torch.tensor([20.0]), torch.tensor([50.0]))
    torch.testing.assert_close(half[0, 3], 20 + torch.arange(100) * 49 / 99)


def test_time_out_zeroes_one_segment_in_all_leads() -> None:
    x, _ = _batch()
    out = A.zero_segment(x, torch.tensor([10, 0, 490]), torch.tensor([5, 0, 50]))
    zero = out == 0
    assert zero[0, :, 10:15].all() and zero[0].sum() == 12 * 5
    assert not zero[1].any() and zero[2, :, 490:].all() and zero[2].sum() == 12 * 10


def test_make_views_gives_two_different_views() -> None:
    x, rpeaks = _batch()
    for method in ("acl", "simclr"):
        v1, v2 = A.make_views(x, rpeaks, FS, _gen(3), method)
        assert v1.shape == v2.shape == x.shape and not torch.equal(v1, v2)
    with pytest.raises(ValueError, match="method"):
        A.make_views(x, rpeaks, FS, _gen(3), "byol")


def test_adjacent_segments_are_the_two_halves_and_draw_nothing() -> None:
    x, rpeaks = _batch()
    gen = _gen(3)
    state = gen.get_state()
    first, second = A.AdjacentSegments()(x[..., :499], rpeaks, FS, gen)
    assert torch.equal(first, x[..., :249]) and torch.equal(second, x[..., 249:498])
    assert torch.equal(gen.get_state(), state)
