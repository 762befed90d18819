"""The rule for a diverged run: its validation AUC is not above chance by a margin.

The AUC judged is the exact one of the weights about to be exported (the best
checkpoint) over every validation example, not the epoch's Keras `val_auc`:
that one bins scores into 200 thresholds and reads 0.5 for a model whose
scores all fall in one bin, however well they rank the classes.

A run that learned nothing (a learning rate far too high, labels scrambled)
ends with AUC 0.5, an EER threshold at an extreme, and a detector that calls
everything one class. `trainer.training.train_lib.finish` applies this rule before it
exports anything, so such a run exits non-zero and promotes no `export/`.
"""

from __future__ import annotations

import math

from absl import logging
import numpy as np

from preprocessing import cli

# Standard errors of a chance AUC a run must beat.
CHANCE_AUC_STANDARD_ERRORS = 3.0
# A split whose chance margin exceeds this cannot tell a trained model from chance.
MAX_MEANINGFUL_MARGIN = 0.25


class TrainingDiverged(cli.UserError):
    """The best validation AUC is at chance: the run learned nothing usable."""


def chance_margin(real: int, fake: int) -> float:
    """How far above 0.5 an AUC must be to beat chance on `real`/`fake` examples.

    `CHANCE_AUC_STANDARD_ERRORS` standard errors of the AUC of a model that
    scores at random (the Mann-Whitney null: sqrt((n0 + n1 + 1) / (12 n0 n1))).
    """
    if real <= 0 or fake <= 0:
        return math.inf
    return CHANCE_AUC_STANDARD_ERRORS * math.sqrt((real + fake + 1) / (12.0 * real * fake))


def check_not_diverged(best_auc: float | None, labels: np.ndarray, split: str) -> None:
    """The rule for a diverged run: its validation AUC is not above chance by a margin.

    A run fails (TrainingDiverged, exit status 1, no export written) when the exact
    validation AUC of its best checkpoint (`best_auc`; NaN for non-finite scores)
    is at most 0.5 + 3 standard errors of a random scorer's AUC on that split
    (`chance_margin`; 0.512 with 10k examples per class). A split too small for
    that margin to stay under 0.25 (fewer than ~24 examples per class) cannot tell
    a trained model from chance: the check is skipped with a warning.
    """
    real, fake = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    margin = chance_margin(real, fake)
    if margin > MAX_MEANINGFUL_MARGIN:
        logging.warning(
            "Validation split %r (%d real, %d fake) is too small to tell a diverged run from a "
            "trained one; the at-chance check is skipped.",
            split,
            real,
            fake,
        )
        return
    if best_auc is None or not math.isfinite(best_auc) or best_auc <= 0.5 + margin:
        shown = "none" if best_auc is None else f"{best_auc:.4f}"
        raise TrainingDiverged(
            f"Training diverged: the validation AUC of the best checkpoint ({shown}) is at "
            f"chance (it must exceed {0.5 + margin:.4f} on {real} real and {fake} fake "
            "examples), so no export was written (an earlier export/ in model_dir, if any, is "
            "left as it was). Fix: lower --learning_rate (or --fine_tune_learning_rate), raise "
            "--warmup_epochs, and check the labels of the training split."
        )
