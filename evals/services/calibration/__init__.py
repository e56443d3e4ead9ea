"""Judge calibration: how well an evaluator's judge agrees with people.

Two sources of the truth:
- human labels (`HumanLabel`), imported for traces or dataset items and
  compared with the judge's latest scored judgement of each (over the
  evaluator's versions, or of one version);
- a dataset's expected labels: each item's `expected_output` is the label the
  judge should give. A calibration judges every labelled item on a worker.

Reports are computed when read, from the scores and the labels as they are
then: correcting an expected label corrects the report without judging again.

- `agreement`: labels normalized like the judge's answers; accuracy, Cohen's kappa, the report
- `labels`: human labels (import, save, delete) and the judge's agreement with them
- `calibrations`: dataset calibrations (start, execution on the run lifecycle, report)

The names below are the ones the API, the tasks and the tests use."""

from evals.services.calibration.agreement import agreement, normalize
from evals.services.calibration.calibrations import (
    SUBJECT_PREFIX,
    calibration_create,
    calibration_dataset_id,
    calibration_execute,
    calibration_report,
)
from evals.services.calibration.labels import label_delete, label_save, labels_import, labels_report

__all__ = ["SUBJECT_PREFIX", "agreement", "calibration_create", "calibration_dataset_id", "calibration_execute",
           "calibration_report", "label_delete", "label_save", "labels_import", "labels_report", "normalize"]
