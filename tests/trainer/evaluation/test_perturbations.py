"""evaluation.perturbations on a known image: each does what its docstring says, seeded."""

import io

import numpy as np
from PIL import Image
import pytest

from trainer.evaluation import perturbations

SIZE = 96


@pytest.fixture(scope="module")
def known_jpeg():
    """A 96 px image with sharp edges, fine texture and smooth areas, as a quality-95 JPEG."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    checker = ((x // 6 + y // 6) % 2) * 120.0  # Sharp edges every 6 px.
    ramp = x / SIZE * 100.0
    disc = ((x - 60) ** 2 + (y - 40) ** 2 < 20**2) * 35.0
    pixels = np.stack([checker + ramp, checker * 0.5 + disc + 60, ramp + disc + 30], axis=-1)
    pixels += np.random.default_rng(0).normal(0, 4, pixels.shape)  # Fine texture.
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def pixels(jpeg):
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def high_frequency_energy(jpeg):
    """Mean squared Laplacian of the grey image: what blur removes and noise adds."""
    grey = pixels(jpeg).mean(axis=-1)
    laplacian = (
        -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    )
    return float(np.mean(laplacian**2))


def psnr(a, b):
    return float(10 * np.log10(255.0**2 / np.mean((pixels(a) - pixels(b)) ** 2)))


def test_jpeg_quality_shrinks_the_file_and_loses_fidelity_step_by_step(known_jpeg):
    qualities = (90, 60, 30, 10)
    out = [perturbations.perturb(known_jpeg, "jpeg", q) for q in qualities]
    sizes = [len(data) for data in out]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), sizes
    fidelity = [psnr(known_jpeg, data) for data in out]
    assert fidelity == sorted(fidelity, reverse=True), fidelity
    assert all(pixels(data).shape == (SIZE, SIZE, 3) for data in out)
    # Deterministic: the same call gives the same bytes.
    assert perturbations.perturb(known_jpeg, "jpeg", 30) == out[2]


def test_blur_lowers_high_frequency_energy_and_noise_raises_it(known_jpeg):
    original = high_frequency_energy(known_jpeg)
    blurred = [
        high_frequency_energy(perturbations.perturb(known_jpeg, "blur", s)) for s in (0.5, 1, 2, 3)
    ]
    assert original > blurred[0] > blurred[1] > blurred[2] > blurred[3], (original, blurred)
    noisy = [
        high_frequency_energy(perturbations.perturb(known_jpeg, "noise", s)) for s in (5, 10, 20)
    ]
    assert original < noisy[0] < noisy[1] < noisy[2], (original, noisy)


def test_noise_is_seeded_by_the_seed_and_the_image_never_by_call_order(known_jpeg):
    first = perturbations.perturb(known_jpeg, "noise", 10, seed=3)
    perturbations.perturb(known_jpeg, "noise", 10, seed=4)  # Another draw in between.
    assert perturbations.perturb(known_jpeg, "noise", 10, seed=3) == first
    assert perturbations.perturb(known_jpeg, "noise", 10, seed=4) != first
    # The noise itself has the asked-for spread (before the 4:4:4 re-encode at q95).
    drawn = np.asarray(
        perturbations.gaussian_noise(
            perturbations.decode(known_jpeg), 10.0, perturbations.image_rng(known_jpeg, 3)
        ),
        dtype=np.float64,
    ) - pixels(known_jpeg)
    assert np.std(drawn) == pytest.approx(10.0, rel=0.1)


def test_down_up_scaling_keeps_the_size_and_loses_detail(known_jpeg):
    scales = (0.75, 0.5, 0.25)
    out = [perturbations.perturb(known_jpeg, "resize", s) for s in scales]
    assert all(pixels(data).shape == (SIZE, SIZE, 3) for data in out)
    energy = [high_frequency_energy(data) for data in out]
    assert high_frequency_energy(known_jpeg) > energy[0] > energy[1] > energy[2], energy
    fidelity = [psnr(known_jpeg, data) for data in out]
    assert fidelity == sorted(fidelity, reverse=True), fidelity


def test_social_chain_shrinks_then_re_encodes(known_jpeg):
    out = perturbations.perturb(known_jpeg, "social", (0.5, 60))
    assert pixels(out).shape == (SIZE // 2, SIZE // 2, 3)
    assert len(out) < len(perturbations.perturb(known_jpeg, "jpeg", 60)) < len(known_jpeg)


def test_every_registered_perturbation_runs_at_its_default_strengths(known_jpeg):
    assert set(perturbations.names()) >= {"jpeg", "resize", "blur", "noise", "social"}
    for perturbation in perturbations.REGISTRY.values():
        assert perturbation.models and perturbation.strength_name
        for strength in perturbation.strengths:
            out = perturbation(known_jpeg, strength)
            assert out[:3] == b"\xff\xd8\xff" and out != known_jpeg, (perturbation.name, strength)


def test_specs_parse_names_strengths_and_all():
    chosen = perturbations.parse_specs(["jpeg:90/50", "blur", "social:0.5@75/0.3@40"])
    assert [(p.name, s) for p, s in chosen] == [
        ("jpeg", (90, 50)),
        ("blur", perturbations.get("blur").strengths),
        ("social", ((0.5, 75), (0.3, 40))),
    ]
    assert [p.name for p, _ in perturbations.parse_specs(["all"])] == perturbations.names()
    assert perturbations.parse_specs([]) == []


@pytest.mark.parametrize(
    "specs,message",
    [
        (["sharpen"], "Unknown perturbation 'sharpen'; choose from"),
        (["jpeg:good"], "JPEG quality must be an integer"),
        (["jpeg:0"], "JPEG quality must be in"),
        (["social:0.5"], "SCALE@QUALITY"),
        (["jpeg:"], "names no strength"),
        (["jpeg", "jpeg:50"], "given twice"),
    ],
)
def test_bad_specs_name_the_problem(specs, message):
    with pytest.raises(ValueError, match=message):
        perturbations.parse_specs(specs)


def test_default_specs_read_back_as_the_default_strengths():
    for perturbation in perturbations.REGISTRY.values():
        ((parsed, strengths),) = perturbations.parse_specs([perturbation.default_spec()])
        assert parsed is perturbation and strengths == perturbation.strengths
