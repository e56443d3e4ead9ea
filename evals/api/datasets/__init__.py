"""Datasets, their items, human labels and judge calibrations, under
`/api/v1/orgs/{org_slug}/projects/{project_id}/`.

- `views`: datasets and their items (import, build from traces, push to and pull from Langfuse)
- `calibration_views`: an evaluator's human labels and its judge's calibrations
- `serializers`, `calibration_serializers`: their request and response bodies
- `uploads`: files uploaded as the raw body or the multipart field `file`
- `errors`: 413 for a file too large; Langfuse refusing (400) or down (503)"""

from evals.api.datasets.calibration_views import CalibrationViewSet, HumanLabelViewSet
from evals.api.datasets.views import DatasetItemViewSet, DatasetViewSet

__all__ = ["CalibrationViewSet", "DatasetItemViewSet", "DatasetViewSet", "HumanLabelViewSet"]
