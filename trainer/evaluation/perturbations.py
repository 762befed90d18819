"""Named, seeded perturbations of JPEG images: what media meets between a generator and a detector.

A detector that is only measured on the pristine files it was trained beside
says little about the images it will be shown: those are re-encoded, resized,
blurred and noisy by the time they reach it. Each perturbation here takes
JPEG bytes and returns JPEG bytes, because that is what the exported detector
takes (`serving_default(images: JPEG bytes)`), so a perturbed image goes
through the same served decode-and-crop as a clean one.

    from trainer.evaluation import perturbations
    worse = perturbations.perturb(jpeg, "jpeg", 50)              # one image
    for perturbation, strengths in perturbations.parse_specs(["blur", "jpeg:90/50"]):
        ...                                                      # what --perturbations names

The registry (`REGISTRY`, `get`, `names`) holds each perturbation with its
default strengths, mild to severe; `trainer.evaluate --perturbations` scores a
split under each and reports how the figures fall. Rules every perturbation
follows:

- Deterministic: the same bytes, strength and seed give the same bytes. Random
  ones (noise) draw from a generator seeded by the seed *and* a hash of the
  input bytes, so the result does not depend on batch order or parallelism.
- Perturbations that are not themselves an encoding re-encode at
  `ENCODE_QUALITY` with full-resolution colour (4:4:4), so the encoding adds
  as little as possible of its own to what is being measured.
- Pure Pillow and numpy: cheap to call from tf.data (`tf.numpy_function`) or
  from Beam workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

# Quality of the re-encode after a perturbation that is not an encoding itself
# (blur, noise, down-up scaling); as high as Pillow recommends, chroma not subsampled.
ENCODE_QUALITY = 95
# Separates strengths in a spec: `jpeg:90/70/50`.
STRENGTH_SEPARATOR = "/"


def decode(jpeg: bytes) -> Image.Image:
    """The RGB image in `jpeg` (any format Pillow reads, in fact)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.convert("RGB")


def encode(image: Image.Image, quality: int = ENCODE_QUALITY, subsampling: int = 0) -> bytes:
    """JPEG bytes of `image`; subsampling 0 is 4:4:4, 2 is the 4:2:0 most encoders use."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality), subsampling=subsampling)
    return buffer.getvalue()


def image_rng(jpeg: bytes, seed: int) -> np.random.Generator:
    """A generator that depends only on `seed` and the image's bytes (never on call order)."""
    digest = hashlib.sha256(jpeg).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


# ---------------------------------------------------------------------- the operations


def jpeg_recompress(image: Image.Image, quality: int) -> bytes:
    """Re-encodes at `quality` with 4:2:0 chroma, as photo apps and platforms do."""
    return encode(image, quality=quality, subsampling=2)


def down_up(image: Image.Image, scale: float) -> Image.Image:
    """Shrinks by `scale`, then enlarges back to the original size (detail is lost, size kept)."""
    width, height = image.size
    small = image.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
    )
    return small.resize((width, height), Image.Resampling.BILINEAR)


def pil_gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur of standard deviation `sigma` pixels (Pillow's `radius` is the std).

    The `blur` perturbation. Training's blur is another one, a TensorFlow op on
    whole batches (`trainer.training.augment.gaussian_blur_batch`).
    """
    return image.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def gaussian_noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Adds independent Gaussian noise of std `sigma` grey levels (0-255) to every pixel."""
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, float(sigma), pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def downscale(image: Image.Image, scale: float) -> Image.Image:
    """Shrinks by `scale` (antialiased) and keeps the smaller size, as a platform's thumbnail."""
    width, height = image.size
    return image.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
    )


# ------------------------------------------------------------------------ the registry


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """One named perturbation: what it models, its strength's meaning and default strengths.

    Attributes:
        name: the registry key, as typed in `--perturbations`.
        models: one sentence on what in the world this imitates.
        strength_name: what the strength measures, with its unit.
        strengths: default strengths, mild to severe.
        transform: (image, strength, rng) -> JPEG bytes.
        parse_strength: text (from a spec) -> strength; raises ValueError.
        format_strength: strength -> short text for tables and legends.
    """

    name: str
    models: str
    strength_name: str
    strengths: tuple
    transform: Callable[[Image.Image, Any, np.random.Generator], bytes]
    parse_strength: Callable[[str], Any]
    format_strength: Callable[[Any], str] = str

    def __call__(self, jpeg: bytes, strength, seed: int = 0) -> bytes:
        """Perturbs one image's bytes; returns JPEG bytes."""
        return self.transform(decode(jpeg), strength, image_rng(jpeg, seed))

    def strength_to_json(self, strength):
        """The strength as a JSON value (a number, or a list for compound ones)."""
        return list(strength) if isinstance(strength, tuple) else strength

    def strength_to_spec(self, strength) -> str:
        """The strength as typed in a spec (`parse_strength` reads it back): 50, 0.5@75."""
        if isinstance(strength, tuple):
            return "@".join(f"{part:g}" for part in strength)
        return f"{strength:g}"

    def default_spec(self) -> str:
        """`NAME:S1/S2/...` with the default strengths, as `--perturbations` takes it."""
        strengths = STRENGTH_SEPARATOR.join(self.strength_to_spec(s) for s in self.strengths)
        return f"{self.name}:{strengths}"


def _number(kind: type, low: float, high: float, what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            kind_name = "an integer" if kind is int else "a number"
            raise ValueError(f"{what} must be {kind_name}; got {text!r}.") from None
        if not low <= value <= high:
            raise ValueError(f"{what} must be in [{low}, {high}]; got {value}.")
        return value

    return parse


def _parse_social(text: str) -> tuple[float, int]:
    scale, separator, quality = text.partition("@")
    if not separator:
        raise ValueError(f"social strength is SCALE@QUALITY, e.g. 0.5@75; got {text!r}.")
    return (
        _number(float, 0.05, 1.0, "social scale")(scale),
        _number(int, 1, 100, "social JPEG quality")(quality),
    )


REGISTRY: dict[str, Perturbation] = {}


def register(perturbation: Perturbation) -> Perturbation:
    """Adds a perturbation to the registry; a name can be registered once."""
    if perturbation.name in REGISTRY:
        raise ValueError(f"Perturbation {perturbation.name!r} is already registered.")
    if STRENGTH_SEPARATOR in perturbation.name or ":" in perturbation.name:
        raise ValueError(f"Perturbation name {perturbation.name!r} may not hold ':' or '/'.")
    REGISTRY[perturbation.name] = perturbation
    return perturbation


register(
    Perturbation(
        name="jpeg",
        models="re-saving at a lower JPEG quality (messengers, photo apps, screenshots re-encoded)",
        strength_name="JPEG quality (1-100)",
        strengths=(90, 75, 60, 45, 30),
        transform=lambda image, quality, rng: jpeg_recompress(image, quality),
        parse_strength=_number(int, 1, 100, "JPEG quality"),
        format_strength=lambda quality: f"q{quality}",
    )
)
register(
    Perturbation(
        name="resize",
        models="down-and-up scaling: a thumbnail enlarged back, which erases fine detail",
        strength_name="scale factor of the intermediate size",
        strengths=(0.75, 0.5, 0.375, 0.25),
        transform=lambda image, scale, rng: encode(down_up(image, scale)),
        parse_strength=_number(float, 0.05, 1.0, "resize scale"),
        format_strength=lambda scale: f"x{scale:g}",
    )
)
register(
    Perturbation(
        name="blur",
        models="defocus, motion smoothing and soft resampling (Gaussian blur)",
        strength_name="Gaussian sigma (pixels)",
        strengths=(0.5, 1.0, 2.0, 3.0),
        transform=lambda image, sigma, rng: encode(pil_gaussian_blur(image, sigma)),
        parse_strength=_number(float, 0.0, 50.0, "blur sigma"),
        format_strength=lambda sigma: f"s{sigma:g}",
    )
)
register(
    Perturbation(
        name="noise",
        models="sensor noise of low light and cheap cameras (additive Gaussian, per pixel)",
        strength_name="noise std (grey levels, 0-255)",
        strengths=(2.0, 5.0, 10.0, 20.0),
        transform=lambda image, sigma, rng: encode(gaussian_noise(image, sigma, rng)),
        parse_strength=_number(float, 0.0, 255.0, "noise std"),
        format_strength=lambda sigma: f"n{sigma:g}",
    )
)
register(
    Perturbation(
        name="social",
        models="what social platforms do on upload: shrink to a smaller size, then re-encode",
        strength_name="SCALE@QUALITY (downscale factor, then JPEG quality)",
        strengths=((0.75, 85), (0.5, 75), (0.5, 60), (0.35, 50)),
        transform=lambda image, s, rng: jpeg_recompress(downscale(image, s[0]), s[1]),
        parse_strength=_parse_social,
        format_strength=lambda s: f"x{s[0]:g}@q{s[1]}",
    )
)


def names() -> list[str]:
    """Registered names, in registration order."""
    return list(REGISTRY)


def get(name: str) -> Perturbation:
    """The registered perturbation; ValueError lists the names that exist."""
    key = name.strip().lower()
    if key not in REGISTRY:
        raise ValueError(f"Unknown perturbation {name!r}; choose from {names()} (or 'all').")
    return REGISTRY[key]


def perturb(jpeg: bytes, name: str, strength, seed: int = 0) -> bytes:
    """Applies the named perturbation at `strength` to JPEG bytes; returns JPEG bytes."""
    return get(name)(jpeg, strength, seed)


def parse_specs(specs: Sequence[str]) -> list[tuple[Perturbation, tuple]]:
    """Turns `--perturbations` values into (perturbation, strengths) pairs.

    Each spec is `NAME` (its default strengths), `NAME:S1/S2/...` (those
    strengths, in that order) or `all` (every registered perturbation).

    Raises:
        ValueError: naming the spec, for an unknown name, a bad strength or a repeat.
    """
    chosen: list[tuple[Perturbation, tuple]] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec.lower() == "all":
            chosen.extend((p, p.strengths) for p in REGISTRY.values())
            continue
        name, separator, values = spec.partition(":")
        perturbation = get(name)
        if not separator:
            chosen.append((perturbation, perturbation.strengths))
            continue
        texts = [text.strip() for text in values.split(STRENGTH_SEPARATOR) if text.strip()]
        if not texts:
            raise ValueError(f"Perturbation spec {spec!r} names no strength after ':'.")
        try:
            strengths = tuple(perturbation.parse_strength(text) for text in texts)
        except ValueError as error:
            raise ValueError(f"Perturbation spec {spec!r}: {error}") from None
        chosen.append((perturbation, strengths))
    seen = [p.name for p, _ in chosen]
    repeated = sorted({name for name in seen if seen.count(name) > 1})
    if repeated:
        raise ValueError(f"Perturbation(s) {repeated} given twice in {list(specs)}.")
    return chosen
