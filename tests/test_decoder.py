"""decoder.py / nncodec.decode: shapes, scaling, caps and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import nncodec
from nncodec import decoder
from nncodec.errors import FormatError, ImageTooLargeError, InputError


def test_decode_rgb_native_size(encoded_rgb):
    out = nncodec.decode(encoded_rgb.data)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out.std() > 5  # an image, not a constant


def test_decode_grey_native_size(encoded_grey):
    out = nncodec.decode(encoded_grey.data)
    assert out.shape == (32, 48) and out.dtype == np.uint8
    assert nncodec.info(encoded_grey.data)["channels"] == 1
    for size in ((10, 7), (100, 70)):
        assert nncodec.decode(encoded_grey.data, size).shape == size[::-1]


@pytest.mark.parametrize("size", [(64, 48), (30, 20), (1, 1), (200, 3), (3, 200), (127, 95)])
def test_decode_at_size(encoded_rgb, size):
    out = nncodec.decode(encoded_rgb.data, size)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8


@pytest.mark.parametrize("scale,shape", [(0.25, (12, 16)), (0.5, (24, 32)), (1, (48, 64)),
                                         (1.5, (72, 96)), (4, (192, 256)), (0.001, (1, 1)),
                                         (1 / 3, (16, 21))])
def test_decode_at_scale(encoded_rgb, scale, shape):
    out = nncodec.decode(encoded_rgb.data, scale=scale)
    assert out.shape == shape + (3,)


def test_decode_size_as_list_and_numpy_ints(encoded_rgb):
    a = nncodec.decode(encoded_rgb.data, [20, 15])
    b = nncodec.decode(encoded_rgb.data, (np.int64(20), np.int32(15)))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (15, 20, 3)


def test_native_size_equals_scale_one_and_explicit_size(encoded_rgb):
    a = nncodec.decode(encoded_rgb.data)
    np.testing.assert_array_equal(a, nncodec.decode(encoded_rgb.data, scale=1.0))
    np.testing.assert_array_equal(a, nncodec.decode(encoded_rgb.data, (64, 48)))


@pytest.mark.parametrize("factor", [2, 4])
def test_integer_downscale_is_box_average(encoded_rgb, factor):
    """Samples of a 1/k render sit exactly on the coded pixel centres."""
    full = nncodec.decode(encoded_rgb.data).astype(np.float64)
    h, w = 48 // factor, 64 // factor
    small = nncodec.decode(encoded_rgb.data, (w, h)).astype(np.float64)
    box = full.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    diff = np.abs(small - box)
    assert diff.mean() < 0.5
    assert diff.max() <= 2.0


@pytest.mark.parametrize("size", [(20, 15), (13, 9), (50, 30)])
def test_fractional_downscale_approximates_area_average(encoded_rgb, size):
    full = nncodec.decode(encoded_rgb.data)
    small = nncodec.decode(encoded_rgb.data, size).astype(np.float64)
    ref = np.asarray(Image.fromarray(full).resize(size, Image.BOX)).astype(np.float64)
    assert np.abs(small - ref).mean() < 2.0
    # Point sampling would alias; check the render is closer to the area average
    # than to nearest-neighbour subsampling.
    nearest = np.asarray(Image.fromarray(full).resize(size, Image.NEAREST)).astype(np.float64)
    assert np.abs(small - ref).mean() < np.abs(nearest - ref).mean()


def test_upscale_is_consistent_with_native(encoded_rgb):
    full = nncodec.decode(encoded_rgb.data).astype(np.float64)
    up = nncodec.decode(encoded_rgb.data, scale=2).astype(np.float64)
    back = up.reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.abs(back - full).mean() < 1.5


def test_decode_twice_identical(encoded_rgb):
    a = nncodec.decode(encoded_rgb.data, (77, 51))
    b = nncodec.decode(encoded_rgb.data, (77, 51))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(nncodec.decode(bytearray(encoded_rgb.data)),
                                  nncodec.decode(encoded_rgb.data))


def test_max_pixels_cap(encoded_rgb):
    w, h = 256, 192  # scale 4
    with pytest.raises(ImageTooLargeError):
        nncodec.decode(encoded_rgb.data, scale=4, max_pixels=w * h - 1)
    assert nncodec.decode(encoded_rgb.data, scale=4, max_pixels=w * h).shape == (h, w, 3)
    assert nncodec.decode(encoded_rgb.data, scale=4, max_pixels=None).shape == (h, w, 3)
    with pytest.raises(ImageTooLargeError):
        nncodec.decode(encoded_rgb.data, max_pixels=100)  # also applies at native size


def test_default_cap_applies(encoded_rgb):
    side = math.isqrt(decoder.MAX_OUTPUT_PIXELS) + 1
    with pytest.raises(ImageTooLargeError):
        nncodec.decode(encoded_rgb.data, (side, side))
    with pytest.raises(ImageTooLargeError):
        nncodec.decode(encoded_rgb.data, scale=1e9, max_pixels=None)


def _tiny_file(width, height):
    """A valid file of a few dozen bytes declaring a ``width x height`` image."""
    from nncodec import format as fmt
    from nncodec.field import ModelSpec

    spec = ModelSpec(width, height, 3, 7, 0, 0, 1, 4, n_chroma=3)
    return fmt.pack(spec, [8, 8], [8, 8], b"\x12\x34")


@pytest.mark.parametrize("coded,size,frame", [((600, 40), (16, 16), (600, 40)),
                                              ((2, 600), (300, 2), (300, 600)),
                                              ((40, 600), None, (40, 600))])
def test_cap_applies_to_coded_size_before_entropy_decoding(monkeypatch, coded, size, frame):
    """A thumbnail of a huge coded image costs as much as the image: the cap covers the frame."""
    data = _tiny_file(*coded)
    assert len(data) < 40
    fw, fh = frame

    def boom(*args):
        raise AssertionError("entropy decoding started")

    with monkeypatch.context() as m:
        m.setattr(decoder, "decode_payload", boom)
        with pytest.raises(ImageTooLargeError) as e:
            nncodec.decode(data, size, max_pixels=fw * fh - 1)
    msg = str(e.value)
    assert f"{fw}x{fh} = {fw * fh} pixels" in msg and f"cap of {fw * fh - 1}" in msg
    if size is not None:
        assert f"{coded[0]}x{coded[1]} coded image" in msg
    out = nncodec.decode(data, size, max_pixels=fw * fh)
    w, h = size or coded
    assert out.shape == (h, w, 3)


def test_default_cap_admits_largest_coded_size():
    """The default cap is above MAX_CODED_PIXELS: every valid file decodes at a small size."""
    from nncodec import format as fmt

    assert decoder.MAX_OUTPUT_PIXELS >= fmt.MAX_CODED_PIXELS
    data = _tiny_file(65536, 1024)
    c = fmt.unpack(data)
    assert c.spec.width * c.spec.height == fmt.MAX_CODED_PIXELS
    assert decoder.output_size(c.spec, (16, 16)) == (16, 16)
    with pytest.raises(ImageTooLargeError):
        nncodec.decode(data, (16, 16), max_pixels=fmt.MAX_CODED_PIXELS - 1)


def test_size_and_scale_together_raise(encoded_rgb):
    with pytest.raises(InputError):
        nncodec.decode(encoded_rgb.data, (32, 24), scale=0.5)


@pytest.mark.parametrize("scale", [0, -1, -0.5, float("nan"), float("inf"), "abc", [2]])
def test_bad_scale_raises(encoded_rgb, scale):
    with pytest.raises(InputError):
        nncodec.decode(encoded_rgb.data, scale=scale)


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (-3, 4), (5,), "abc", (1, 2, 3), 7])
def test_bad_size_raises(encoded_rgb, size):
    with pytest.raises(InputError):
        nncodec.decode(encoded_rgb.data, size)


def test_errors_are_nni_errors(encoded_rgb):
    for exc in (InputError, ImageTooLargeError, FormatError):
        assert issubclass(exc, nncodec.NniError) and issubclass(exc, ValueError)
    with pytest.raises(FormatError):
        nncodec.decode(b"not an nni file")


def test_parse_returns_dequantized_parameters(encoded_rgb):
    c, theta, lat = decoder.parse(encoded_rgb.data)
    s = c.spec
    assert theta.shape == (s.n_params,) and theta.dtype == np.float32
    assert lat.shape == (s.n_latents,) and lat.dtype == np.float32
    assert np.all(lat == np.round(lat))  # latents are integers
    # Each group is an integer multiple of its layer's quantization step.
    from nncodec.format import STEP_TABLE

    p = 0
    for k, (o, i) in enumerate(s.layer_shapes()):
        for n, sidx in ((o * i, c.weight_steps[k]), (o, c.bias_steps[k])):
            q = theta[p: p + n].astype(np.float64) / STEP_TABLE[sidx]
            np.testing.assert_allclose(q, np.round(q), atol=1e-4)
            p += n


def test_output_size_rounding():
    from nncodec.field import ModelSpec

    s = ModelSpec(64, 48, 3, 1, 0, 0, 0, 1)
    assert decoder.output_size(s) == (64, 48)
    assert decoder.output_size(s, scale=1.5) == (96, 72)
    assert decoder.output_size(s, scale=0.1) == (6, 5)
    assert decoder.output_size(s, size=(7, 9)) == (7, 9)


# ---------------------------------------------------------------------------
# Hand-built files against the naive reference (header -> entropy decoding ->
# dequantization -> rendering), for every stencil.


def _handmade_file(spec, seed):
    """A valid file with random small integers; returns (data, theta, lat)."""
    from nncodec import format as fmt
    from nncodec.entropy import encode_payload

    rng = np.random.default_rng(seed)
    n_layers = spec.n_hidden + 1
    ws = [int(v) for v in rng.integers(14, 19, n_layers)]  # steps 2^-3.5 .. 2^-4.5
    bs = [int(v) for v in rng.integers(10, 15, n_layers)]
    wq = rng.integers(-6, 7, spec.n_params).astype(np.int64)
    # Output bias near mid-grey so that the image is not clipped flat.
    wq[-spec.channels:] = int(round(0.5 / fmt.STEP_TABLE[bs[-1]]))
    latq = rng.integers(-3, 4, spec.n_latents).astype(np.int64)
    payload = encode_payload(wq, spec.group_sizes(), latq, spec.level_dims())
    data = fmt.pack(spec, ws, bs, payload)
    theta = decoder.dequantize(spec, wq, ws, bs)
    return data, theta, latq.astype(np.float32)


@pytest.mark.parametrize("chroma", [0, 2])
@pytest.mark.parametrize("stencil", [0, 1, 2])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_handmade_file_matches_naive(stencil, channels, chroma):
    import naive
    from nncodec.field import ModelSpec

    spec = ModelSpec(11, 7, channels, 3, 0, 1, 1, 5, stencil=stencil, n_chroma=chroma)
    data, theta, lat = _handmade_file(spec, seed=10 * stencil + channels + 100 * chroma)
    info = nncodec.info(data)
    assert info["stencil"] == stencil and info["n_chroma"] == chroma
    c, theta2, lat2 = decoder.parse(data)
    assert c.spec == spec
    np.testing.assert_array_equal(theta2, theta)
    np.testing.assert_array_equal(lat2, lat)
    for size in ((11, 7), (4, 3), (23, 15)):
        got = nncodec.decode(data, size)
        want = naive.render(spec, theta, lat, *size)
        want = want[:, :, 0] if channels == 1 else want
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        assert np.ptp(want) > 5


@pytest.mark.parametrize("stencil", [0, 1, 2])
def test_decode_narrow_image_matches_naive(stencil):
    """Images under 16 samples wide: several output rows share a block of MLP lanes."""
    import naive
    from nncodec.field import ModelSpec

    spec = ModelSpec(3, 21, 3, 3, 0, 1, 1, 5, stencil=stencil, n_chroma=1)
    data, theta, lat = _handmade_file(spec, seed=7 + stencil)
    assert np.ptp(nncodec.decode(data)) > 5  # not a flat image
    for size in ((3, 21), (1, 21), (2, 45), (1, 1), (5, 9), (40, 3)):
        got = nncodec.decode(data, size)
        want = naive.render(spec, theta, lat, *size)
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
