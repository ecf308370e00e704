"""Batch augmentation against the image-by-image definition (reflect-pad 4, crop 32x32, mirror)."""
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from semisup.augment import PAD, augment, augment_params, flip_pad_crop, to_float


def _reference(image, flip, dy, dx):
    """One image: F.pad(reflect) + crop + flip, in float to allow reflect padding, back to uint8."""
    padded = F.pad(image[None].float(), (PAD, PAD, PAD, PAD), mode="reflect")[0]
    crop = padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]
    return (crop.flip(-1) if flip else crop).to(torch.uint8)


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_flip_pad_crop_equals_image_by_image_reference():
    images = _images(40)
    g = torch.Generator().manual_seed(1)
    flip, dy, dx = augment_params(40, generator=g)
    # The corners of the offset range and both flips, besides the random draws.
    flip[:4] = torch.tensor([False, True, False, True])
    dy[:4], dx[:4] = torch.tensor([0, 0, 8, 8]), torch.tensor([0, 8, 0, 8])
    out = flip_pad_crop(images, flip, dy, dx)
    for i in range(len(images)):
        assert torch.equal(out[i], _reference(images[i], bool(flip[i]), int(dy[i]), int(dx[i]))), i


def test_matches_torchvision_on_uint8():
    images = _images(8, seed=2)
    flip = torch.tensor([True, False] * 4)
    dy, dx = torch.arange(8), torch.arange(8).flip(0)
    out = flip_pad_crop(images, flip, dy, dx)
    for i in range(8):
        ref = TF.crop(TF.pad(images[i], [PAD], padding_mode="reflect"), int(dy[i]), int(dx[i]), 32, 32)
        assert torch.equal(out[i], TF.horizontal_flip(ref) if flip[i] else ref)


def test_centre_crop_without_flip_is_identity_and_dtype_is_kept():
    images = _images(5, seed=3)
    zeros = torch.zeros(5, dtype=torch.long)
    out = flip_pad_crop(images, torch.zeros(5, dtype=torch.bool), zeros + PAD, zeros + PAD)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, images)
    mirrored = flip_pad_crop(images, torch.ones(5, dtype=torch.bool), zeros + PAD, zeros + PAD)
    assert torch.equal(mirrored, images.flip(-1))


def test_params_cover_the_whole_range_and_are_seeded():
    flip, dy, dx = augment_params(2000, generator=torch.Generator().manual_seed(0))
    assert flip.dtype == torch.bool and 800 < int(flip.sum()) < 1200
    assert set(dy.tolist()) == set(range(2 * PAD + 1)) == set(dx.tolist())
    again = augment_params(2000, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((flip, dy, dx), again))


def test_augment_uses_the_given_generator():
    images = _images(16, seed=4)
    a = augment(images, torch.Generator().manual_seed(9))
    b = augment(images, torch.Generator().manual_seed(9))
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, augment(images, torch.Generator().manual_seed(10)))


def test_to_float_maps_0_to_minus_1_and_255_to_1():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    x = to_float(images)
    assert x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.full((2, 4, 4), -1.0))
    assert torch.equal(x[:, 2], torch.full((2, 4, 4), 1.0))
    torch.testing.assert_close(x[:, 1], torch.full((2, 4, 4), 51 * 2 / 255 - 1))
    assert to_float(images, torch.channels_last).is_contiguous(memory_format=torch.channels_last)
    assert images.dtype == torch.uint8  # the uint8 source is left alone


def test_no_flip_never_mirrors_and_draws_no_flip():
    """SVHN: pad 4 and crop, never a mirror (a mirrored 2 is no digit). Every output is some unmirrored crop."""
    images = _images(64, seed=5)
    flip, dy, dx = augment_params(64, generator=torch.Generator().manual_seed(3), flip=False)
    assert not flip.any() and set(dy.tolist()) <= set(range(9))
    out = augment(images, torch.Generator().manual_seed(3), pad=4, flip=False)
    assert torch.equal(out, flip_pad_crop(images, torch.zeros(64, dtype=torch.bool), dy, dx))
    flipped = augment(images, torch.Generator().manual_seed(3))  # the CIFAR default mirrors about half
    mirrored = sum(any(torch.equal(flipped[i], _reference(images[i], True, y, x)) for y in range(9) for x in range(9))
                   for i in range(16))
    assert 3 <= mirrored <= 13


def test_stl10_pad_12_on_96x96_equals_torchvision():
    g = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (6, 3, 96, 96), generator=g, dtype=torch.uint8)
    flip, dy, dx = augment_params(6000, generator=g, pad=12)
    assert set(dy.tolist()) == set(range(25)) == set(dx.tolist())  # offsets 0 .. 2·12
    flip, dy, dx = flip[:6], dy[:6], dx[:6]
    dy[:2], dx[:2] = torch.tensor([0, 24]), torch.tensor([24, 0])  # the far corners of the padded image
    out = flip_pad_crop(images, flip, dy, dx, pad=12)
    for i in range(6):
        ref = TF.crop(TF.pad(images[i], [12], padding_mode="reflect"), int(dy[i]), int(dx[i]), 96, 96)
        assert torch.equal(out[i], TF.horizontal_flip(ref) if flip[i] else ref)
