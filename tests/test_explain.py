"""Attribution maps for every method (shape, range, determinism, class choice, thread safety), checked against
hand-written Saliency, Grad-CAM, Occlusion and Integrated Gradients; and the overlays on the crop and on the photo."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from photos import astronaut
from PIL import Image

from fer_core.checkpoint import load_model
from fer_core.config import IMAGE_SIZE, NUM_CLASSES
from fer_core.crops import face_square
from fer_core.explain import CAVEATS, METHODS, explain, last_conv, overlay
from fer_core.models import build_model
from fer_core.predict import predict_image

# fer_core.explain silences this Captum notice at import; pytest resets warning filters for each test.
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations")


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def crops(model, sample_data):
    """The astronaut's face as the photo path crops it, and two real FER faces."""
    return [predict_image(astronaut(), model)[0].crop, *sample_data.images["PublicTest"][:2].numpy()]


def _input(model, crop: np.ndarray) -> torch.Tensor:
    """(1, 1, c, c) normalised centre crop, written out by hand."""
    c, off = model.config.crop_size, (IMAGE_SIZE - model.config.crop_size) // 2
    x = (torch.from_numpy(crop.astype(np.float32)) - model.norm.mean) / model.norm.std
    return x[off : off + c, off : off + c][None, None].clone()


def _inside(model, heat: np.ndarray) -> np.ndarray:
    off = (IMAGE_SIZE - model.config.crop_size) // 2
    return heat[off : IMAGE_SIZE - off, off : IMAGE_SIZE - off]


def _proportional(heat: np.ndarray, raw: np.ndarray) -> None:
    """heat is raw scaled to [0, 1] (clipped at the top): equal up to one factor where neither is clipped or zero."""
    raw = np.maximum(raw, 0)
    keep = (heat > 0.01) & (heat < 0.99)
    assert keep.sum() > 10
    ratio = raw[keep] / heat[keep]
    assert ratio.std() / ratio.mean() < 1e-3
    assert (heat[raw <= 0] == 0).all()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_deterministic_48x48_map_in_0_1(model, crops, method):
    for crop in crops:
        heat = explain(model, crop, method)
        assert heat.shape == (IMAGE_SIZE, IMAGE_SIZE) and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() == pytest.approx(1.0) and np.isfinite(heat).all()
        assert (heat > 0).sum() > 30  # a map, not a lone pixel
        outside = np.ones_like(heat, bool)
        off = (IMAGE_SIZE - model.config.crop_size) // 2
        outside[off : IMAGE_SIZE - off, off : IMAGE_SIZE - off] = False
        assert (heat[outside] == 0).all()  # the model never saw the border the centre crop drops
        assert np.array_equal(explain(model, crop, method), heat)


@pytest.mark.parametrize("method", list(METHODS))
def test_predicted_class_by_default_and_a_chosen_class_on_request(model, crops, method):
    crop = crops[0]
    with torch.no_grad():
        logits = model.model(_input(model, crop))[0]
    predicted, least = int(logits.argmax()), int(logits.argmin())
    default = explain(model, crop, method)
    assert np.array_equal(explain(model, crop, method, target=predicted), default)
    assert not np.allclose(explain(model, crop, method, target=least), default, atol=1e-3)


def test_saliency_is_the_gradient_magnitude(model, crops):
    for crop in crops:
        x = _input(model, crop).requires_grad_()
        logits = model.model(x)
        (grad,) = torch.autograd.grad(logits[0, logits.argmax()], x)
        _proportional(_inside(model, explain(model, crop, "saliency")), grad.abs()[0, 0].numpy())


def test_gradcam_matches_a_hand_written_grad_cam(model, crops):
    conv, store = last_conv(model.model), {}
    for crop in crops:
        handle = conv.register_forward_hook(lambda mod, inp, out: store.update(act=out))
        try:
            logits = model.model(_input(model, crop))
        finally:
            handle.remove()
        act = store["act"]  # (1, C, h, w)
        (grad,) = torch.autograd.grad(logits[0, logits.argmax()], act)
        cam = torch.relu((grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True))
        c = model.config.crop_size
        cam = torch.nn.functional.interpolate(cam, size=(c, c), mode="bilinear", align_corners=False)
        _proportional(_inside(model, explain(model, crop, "gradcam")), cam[0, 0].detach().numpy())


def test_occlusion_is_the_probability_lost_under_each_grey_patch(model, crops):
    crop, c = crops[0], model.config.crop_size
    x = _input(model, crop)
    starts = range(0, c - 8 + 1, 4)  # 8 x 8 patches every 4 px, as documented
    with torch.no_grad():
        p = torch.softmax(model.model(x), 1)[0]
        target = int(p.argmax())
        batch = x.repeat(len(starts) ** 2, 1, 1, 1)
        for k, (i, j) in enumerate((i, j) for i in starts for j in starts):
            batch[k, 0, i : i + 8, j : j + 8] = 0.0  # the mean grey, in normalised units
        drops = p[target] - torch.softmax(model.model(batch), 1)[:, target]
    total, count = np.zeros((c, c)), np.zeros((c, c))
    for k, (i, j) in enumerate((i, j) for i in starts for j in starts):
        total[i : i + 8, j : j + 8] += drops[k].item()
        count[i : i + 8, j : j + 8] += 1
    _proportional(_inside(model, explain(model, crop, "occlusion")), total / count)


def test_integrated_gradients_agree_with_a_fine_riemann_sum(model, crops):
    crop = crops[0]
    x = _input(model, crop)
    alphas = (torch.arange(256) + 0.5) / 256  # midpoint rule, 256 steps
    path = (alphas[:, None, None, None] * x).requires_grad_()  # baseline 0 = the mean grey face
    logits = model.model(path)
    target = int(model.model(x).argmax())
    (grads,) = torch.autograd.grad(logits[:, target].sum(), path)
    ig = (x * grads.mean(0, keepdim=True)).abs()[0, 0].detach().numpy()
    heat = _inside(model, explain(model, crop, "integrated_gradients"))
    assert np.corrcoef(heat.ravel(), np.minimum(ig / np.quantile(ig, 0.99), 1).ravel())[0, 1] > 0.97


def test_maps_depend_on_the_learned_weights(model, crops):
    """Adebayo et al.'s sanity check: Saliency and Grad-CAM must change when the weights are random."""
    torch.manual_seed(0)
    random_net = build_model(model.config.model, width=model.config.width).eval()
    shuffled = type(model)(model=random_net, config=model.config, norm=model.norm, path="random", meta={})
    for method in ("saliency", "gradcam"):
        a, b = explain(model, crops[0], method), explain(shuffled, crops[0], method)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.8
    assert set(CAVEATS) == {"guided_backprop", "guided_gradcam"}  # the methods that fail it carry a warning


def test_concurrent_calls_match_sequential_ones_and_leave_the_shared_model_clean(crops, fast_checkpoint):
    model = load_model(fast_checkpoint)  # any shared model will do; the small one keeps 56 explanations quick
    jobs = [(method, i, target) for method in METHODS for i in range(2) for target in (None, 0)]  # photo and FER face
    sequential = [explain(model, crops[i], m, t) for m, i, t in jobs]
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda job: explain(model, crops[job[1]], job[0], job[2]), jobs * 2))
    for job, got in zip(jobs * 2, concurrent, strict=True):
        assert np.allclose(got, sequential[jobs.index(job)], atol=1e-6, rtol=0), job
    for module in model.model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                    or module._backward_pre_hooks)
    assert all(p.grad is None for p in model.model.parameters()) and not model.model.training
    assert all(torch.equal(v, before[k]) for k, v in model.model.state_dict().items())


def test_works_inside_inference_mode_and_for_a_model_left_in_train_mode(crops):
    loaded = load_model()  # a private copy: this test changes its mode
    saliency, ig = explain(loaded, crops[0], "saliency"), explain(loaded, crops[0], "integrated_gradients")
    with torch.inference_mode():  # the prediction path's mode must not break the gradients
        assert np.array_equal(explain(loaded, crops[0], "saliency"), saliency)
    loaded.model.train()  # dropout and batch-norm statistics would make maps random: explanations use eval mode
    assert np.array_equal(explain(loaded, crops[0], "integrated_gradients"), ig)
    assert loaded.model.training  # and the caller's model is left as it was


def test_bad_arguments_are_refused(model, crops):
    with pytest.raises(ValueError, match="unknown method 'lime'"):
        explain(model, crops[0], "lime")
    with pytest.raises(ValueError, match="uint8 \\(48, 48\\) crop"):
        explain(model, crops[0].astype(np.float32), "saliency")
    with pytest.raises(ValueError, match="target must be a class index"):
        explain(model, crops[0], "saliency", target=NUM_CLASSES)


# ---------------------------------------------------------------------------------------------- overlays


def test_overlay_on_the_crop_colours_only_where_the_map_is_warm(crops):
    crop = crops[0]
    heat = np.zeros((48, 48), np.float32)
    heat[:24, :24] = 1.0  # top-left quadrant
    out = np.asarray(overlay(crop, heat, alpha=0.6, size=96)).astype(int)
    base = np.asarray(Image.fromarray(crop).convert("RGB").resize((96, 96), Image.Resampling.BILINEAR)).astype(int)
    assert out.shape == (96, 96, 3)
    assert np.array_equal(out[60:, 60:], base[60:, 60:])  # cold: the face unchanged
    assert np.abs(out[:40, :40] - base[:40, :40]).mean() > 40  # warm: coloured
    assert np.array_equal(np.asarray(overlay(crop, heat, alpha=0.0, size=96)), base)


def test_overlay_on_the_photo_lands_on_the_face(model):
    photo = astronaut()
    (face,) = predict_image(photo, model)
    heat = np.zeros((48, 48), np.float32)
    heat[:, 24:] = 1.0  # the right half of the crop
    out = np.asarray(overlay(photo, heat, box=face.box, margin=face.margin)).astype(int)
    before = np.asarray(photo).astype(int)
    x0, y0, side = face_square(face.box, face.margin)
    changed = np.abs(out - before).sum(2) > 30
    ys, xs = np.nonzero(changed)
    assert out.shape == before.shape and changed.sum() > 0.4 * side * side
    assert xs.min() >= x0 + side // 2 - 2 and xs.max() < x0 + side and ys.min() >= y0 and ys.max() < y0 + side
    assert np.array_equal(np.asarray(overlay(photo, heat, box=(900, 900, 10, 10))), before)  # off the photo: unchanged


def test_overlay_on_a_turned_face_turns_with_it():
    photo = Image.new("RGB", (400, 400), (128, 128, 128))
    heat = np.zeros((48, 48), np.float32)
    heat[4:10, 36:42] = 1.0  # a warm patch near the crop's top-right corner, centred at (39, 7) in crop pixels
    box, angle = (150, 150, 96, 96), 30.0
    out = np.asarray(overlay(photo, heat, alpha=1.0, box=box, margin=0.0, angle=angle)).astype(int)
    ys, xs = np.nonzero(np.abs(out - 128).sum(2) > 30)
    # by hand: offset from the crop centre, x2 to photo pixels, turned 30 degrees counter-clockwise (y points down)
    dx, dy = (39.5 - 24) * 2, (7.5 - 24) * 2
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    expect = (198 + dx * c + dy * s, 198 - dx * s + dy * c)
    assert np.hypot(xs.mean() - expect[0], ys.mean() - expect[1]) < 3
    assert np.hypot(xs.mean() - (198 + dx), ys.mean() - (198 + dy)) > 15  # not where an upright square would put it
    assert 0.5 * 144 < len(xs) < 1.5 * 144  # the 6x6 patch at twice the size, not smeared over the square
