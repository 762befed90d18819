"""What `dfd-serve` is told: one frozen, validated object built from its flags."""

from __future__ import annotations

import dataclasses

from trainer.inference import media


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """The service's model, batching and limits (the flags of trainer/serve.py say why each)."""

    export_dir: str
    model_name: str = "deepfake"
    model_url: str | None = None
    threshold: float | None = None
    options: media.MediaOptions = dataclasses.field(default_factory=media.MediaOptions)
    # Dynamic batching (TF Serving's parameter names).
    enable_batching: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 0
    max_enqueued_images: int = 1024
    num_batch_threads: int = 1
    # Limits.
    max_upload_bytes: int = 100_000_000
    max_video_seconds: float = 300.0
    max_concurrent_analyses: int = 2
    max_queued_analyses: int = 8
    request_timeout_seconds: float = 120.0
    retry_after_seconds: int = 2
    media_ttl_seconds: int = 600
    max_predict_instances: int = 256
    # Grad-CAM on request (`explain=1`), when model.keras is found.
    keras_model: str | None = None
    explain_layer: str | None = None

    def __post_init__(self):
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_enqueued_images": self.max_enqueued_images,
            "num_batch_threads": self.num_batch_threads,
            "max_upload_bytes": self.max_upload_bytes,
            "max_video_seconds": self.max_video_seconds,
            "max_concurrent_analyses": self.max_concurrent_analyses,
            "request_timeout_seconds": self.request_timeout_seconds,
            "retry_after_seconds": self.retry_after_seconds,
            "media_ttl_seconds": self.media_ttl_seconds,
            "max_predict_instances": self.max_predict_instances,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"--{name} must be > 0; got {value}.")
        if self.batch_timeout_micros < 0 or self.max_queued_analyses < 0:
            raise ValueError(
                "--batch_timeout_micros and --max_queued_analyses must be >= 0; got "
                f"{self.batch_timeout_micros}, {self.max_queued_analyses}."
            )
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise ValueError(f"--model_name={self.model_name!r}: a non-empty name without / or :.")
