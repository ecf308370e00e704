"""Every strong-augmentation op against PIL applied to the same uint8 image, written as the official code writes
it (google-research/fixmatch ``third_party/auto_augment/augmentations.py`` for RandAugment, ``libml/ctaugment.py``
for CTAugment). The ports reproduce PIL's arithmetic, so the comparison is exact: not one level on one pixel."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from semisup.strong import ops
from semisup.strong.cta_ops import CTA_OPS, cta_apply
from semisup.strong.randaugment import NAMES, SIGNED, ra_apply, ra_cutout


def _images():
    """Noise over the full range, a narrow-range one (autocontrast/equalize do work), a smooth one (filters)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    narrow = rng.integers(60, 170, (32, 32, 3), dtype=np.uint8)
    smooth = np.clip(np.cumsum(rng.integers(-12, 13, (32, 32, 3)), 0) + 128, 0, 255).astype(np.uint8)
    return [noise, narrow, smooth]


IMAGES = _images()


def _tensor(x):
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).contiguous()


def _assert_same(mine: torch.Tensor, ref: np.ndarray):
    assert mine.dtype == torch.uint8
    diff = np.abs(mine.permute(1, 2, 0).numpy().astype(int) - ref.astype(int))
    assert diff.max() == 0, f"{(diff > 0).mean():.3%} of values differ, by up to {diff.max()}"


# RandAugment: the official ops on an RGBA image, unwrapped with the transparent pixels gray.
def _int(level, maxval):
    return int(level * maxval / 10)


def _float(level, maxval):
    return float(level) * maxval / 10


def _sign(v, negate):
    return -v if negate else v


def _enh(enhancer):
    return lambda im, lv, neg: enhancer(im).enhance(_float(lv, 1.8) + .1)


PIL_RA = {
    "Identity": lambda im, lv, neg: im,
    "AutoContrast": lambda im, lv, neg: ImageOps.autocontrast(im.convert("RGB")).convert("RGBA"),
    "Equalize": lambda im, lv, neg: ImageOps.equalize(im.convert("RGB")).convert("RGBA"),
    "Rotate": lambda im, lv, neg: im.rotate(_sign(_int(lv, 30), neg)),
    "Solarize": lambda im, lv, neg: ImageOps.solarize(im.convert("RGB"), 256 - _int(lv, 256)).convert("RGBA"),
    "Color": _enh(ImageEnhance.Color),
    "Contrast": _enh(ImageEnhance.Contrast),
    "Brightness": _enh(ImageEnhance.Brightness),
    "Sharpness": _enh(ImageEnhance.Sharpness),
    "ShearX": lambda im, lv, neg: im.transform(im.size, Image.AFFINE, (1, _sign(_float(lv, 0.3), neg), 0, 0, 1, 0)),
    "ShearY": lambda im, lv, neg: im.transform(im.size, Image.AFFINE, (1, 0, 0, _sign(_float(lv, 0.3), neg), 1, 0)),
    "TranslateX": lambda im, lv, neg: im.transform(im.size, Image.AFFINE, (1, 0, _sign(_int(lv, 10), neg), 0, 1, 0)),
    "TranslateY": lambda im, lv, neg: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, _sign(_int(lv, 10), neg))),
    "Posterize": lambda im, lv, neg: ImageOps.posterize(im.convert("RGB"), 4 - _int(lv, 4)).convert("RGBA"),
}


def _pil_ra(x, policy):
    im = Image.fromarray(x).convert("RGBA")
    for name, level, negate in policy:
        im = PIL_RA[name](im, level, negate)
    rgba = np.array(im)
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = ops.GRAY
    return rgb


def test_ra_has_the_official_14_ops():
    assert set(NAMES) == set(PIL_RA) and len(NAMES) == 14


@pytest.mark.parametrize("name", NAMES)
def test_ra_op_matches_pil_at_every_level(name):
    for x in IMAGES:
        for level in range(1, 10):
            for negate in ([False, True] if name in SIGNED else [False]):
                policy = [(name, level, negate)]
                _assert_same(ra_apply(_tensor(x), policy), _pil_ra(x, policy))


@pytest.mark.parametrize("first", ["Rotate", "ShearX", "TranslateY"])
def test_ra_fill_rules_after_a_geometric_op_match_pil(first):
    """The alpha rules: a fill stays gray through colour blends, turns black after the RGB-only ops."""
    for second in NAMES:
        policy = [(first, 8, True), (second, 6, False)]
        _assert_same(ra_apply(_tensor(IMAGES[2]), policy), _pil_ra(IMAGES[2], policy))


def test_ra_cutout_is_the_official_16_pixel_box():
    x = _tensor(IMAGES[0])
    for seed in range(20):
        out = ra_cutout(x, generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        row, col = torch.randint(32, (1,), generator=g).item(), torch.randint(32, (1,), generator=g).item()
        mask = np.ones((32, 32), bool)  # create_cutout_mask: [c - 8, c + 8) clipped
        mask[max(0, row - 8):min(32, row + 8), max(0, col - 8):min(32, col + 8)] = False
        ref = np.where(mask[..., None], IMAGES[0], ops.GRAY)
        _assert_same(out, ref)


# CTAugment: the official ops on a PIL RGB image (ANTIALIAS is LANCZOS).
def _blend_op(op):
    return lambda im, v: Image.blend(im, op(im), v)


def _cta_enh(enhancer):
    return lambda im, v: enhancer(im).enhance(0.1 + 1.9 * v)


def _pil_rescale(im, scale, method):
    s = im.size
    scale *= 0.25
    crop = (scale * s[0], scale * s[1], s[0] * (1 - scale), s[1] * (1 - scale))
    methods = (Image.LANCZOS, Image.BICUBIC, Image.BILINEAR, Image.BOX, Image.HAMMING, Image.NEAREST)
    return im.crop(crop).resize(im.size, methods[int(method * 5.99)])


def _affine(coeffs):
    return lambda im, v: im.transform(im.size, Image.AFFINE, coeffs((2 * v - 1) * 0.3))


PIL_CTA = {
    "autocontrast": _blend_op(ImageOps.autocontrast),
    "blur": _blend_op(lambda im: im.filter(ImageFilter.BLUR)),
    "brightness": _cta_enh(ImageEnhance.Brightness),
    "color": _cta_enh(ImageEnhance.Color),
    "contrast": _cta_enh(ImageEnhance.Contrast),
    "equalize": _blend_op(ImageOps.equalize),
    "invert": _blend_op(ImageOps.invert),
    "identity": lambda im: im,
    "posterize": lambda im, v: ImageOps.posterize(im, 1 + int(v * 7.999)),
    "rescale": _pil_rescale,
    "rotate": lambda im, v: im.rotate(int(np.round((2 * v - 1) * 45))),
    "sharpness": _cta_enh(ImageEnhance.Sharpness),
    "shear_x": _affine(lambda s: (1, s, 0, 0, 1, 0)),
    "shear_y": _affine(lambda s: (1, 0, 0, s, 1, 0)),
    "smooth": _blend_op(lambda im: im.filter(ImageFilter.SMOOTH)),
    "solarize": lambda im, v: ImageOps.solarize(im, int(v * 255.999)),
    "translate_x": _affine(lambda d: (1, 0, d, 0, 1, 0)),
    "translate_y": _affine(lambda d: (1, 0, 0, 0, 1, d)),
}
VALUES = [0.0, 1 / 17, 0.2, 0.37, 0.5, 0.61, 0.8, 0.95, 0.999, 1.0]


def test_cta_has_the_official_19_ops_and_bins():
    assert len(CTA_OPS) == 19 and set(CTA_OPS) == set(PIL_CTA) | {"cutout"}
    bins = {name: b for name, (_, b) in CTA_OPS.items()}
    assert bins.pop("identity") == () and bins.pop("posterize") == (8,) and bins.pop("rescale") == (17, 6)
    assert set(bins.values()) == {(17,)}


@pytest.mark.parametrize("name", sorted(set(PIL_CTA) - {"identity", "rescale"}))
def test_cta_op_matches_pil(name):
    for x in IMAGES:
        for v in VALUES:
            _assert_same(cta_apply(_tensor(x), [(name, [v])]), np.asarray(PIL_CTA[name](Image.fromarray(x), v)))


def test_cta_rescale_matches_pil_for_every_filter():
    for x in IMAGES:
        for scale in VALUES:
            for method in [(k + 0.5) / 6 for k in range(6)]:
                ref = np.asarray(_pil_rescale(Image.fromarray(x), scale, method))
                _assert_same(cta_apply(_tensor(x), [("rescale", [scale, method])]), ref)


def test_cta_identity_and_the_translate_no_op():
    x = _tensor(IMAGES[0])
    assert torch.equal(cta_apply(x, [("identity", [])]), x)
    for v in VALUES:  # at most 0.3 px with NEAREST: the official translate never moves a pixel
        assert torch.equal(cta_apply(x, [("translate_x", [v]), ("translate_y", [v])]), x)


@pytest.mark.parametrize("level", [0.0, 0.3, 0.5, 1.0])
def test_cta_cutout_matches_the_official_pixel_loop(level):
    x = IMAGES[1]
    for seed in range(10):
        out = cta_apply(_tensor(x), [("cutout", [level])], generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        height_loc, width_loc = torch.randint(32, (1,), generator=g).item(), torch.randint(32, (1,), generator=g).item()
        im = Image.fromarray(x)  # the official loop, with its draws replaced by the generator's
        size = 1 + int(level * min(im.size) * 0.499)
        pixels = im.load()
        for i in range(max(0, height_loc - size // 2), min(32, height_loc + size // 2)):
            for j in range(max(0, width_loc - size // 2), min(32, width_loc + size // 2)):
                pixels[i, j] = (127, 127, 127)
        _assert_same(out, np.asarray(im))
