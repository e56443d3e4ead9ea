"""Files uploaded to import items or labels: as the raw request body (`application/x-ndjson`,
`application/jsonl`, `text/csv`; labels also `application/json`) or as the multipart field `file`,
up to settings.EVALS_MAX_UPLOAD_BYTES."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.types import OpenApiTypes
from rest_framework import exceptions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.request import Request

from evals.api.datasets.errors import FileTooLarge
from evals.services.datasets import max_upload_bytes

RAW_TYPES = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "text/csv": "csv",
             "application/json": "json"}
EXTENSIONS = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "csv": "csv"}
MULTIPART_SLACK = 64 * 1024  # multipart framing around the file


class RawUpload(BaseParser):
    """A file sent as the request body, as bytes, up to the import limit."""

    def parse(self, stream: Any, media_type: str | None = None,  # type: ignore[override]
              parser_context: Any = None) -> bytes:
        data = stream.read(max_upload_bytes() + 1) if stream is not None else b""
        if len(data) > max_upload_bytes():
            raise FileTooLarge()
        return bytes(data)


class NDJSONUpload(RawUpload):
    media_type = "application/x-ndjson"


class JSONLUpload(RawUpload):
    media_type = "application/jsonl"


class CSVUpload(RawUpload):
    media_type = "text/csv"


class JSONUpload(RawUpload):
    media_type = "application/json"


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file; its name's extension (.jsonl, .ndjson, .json, .csv) "
                                           "tells the format.")


ITEM_UPLOAD = {"application/x-ndjson": OpenApiTypes.BINARY, "application/jsonl": OpenApiTypes.BINARY,
               "text/csv": OpenApiTypes.BINARY, "multipart/form-data": UploadSerializer}
LABEL_UPLOAD = {**ITEM_UPLOAD, "application/json": OpenApiTypes.BINARY}


def read_upload(request: Request, allowed: set[str]) -> tuple[bytes, str]:
    """(content, format) of an uploaded file."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_upload_bytes() + MULTIPART_SLACK:
        raise FileTooLarge()
    data = request.data
    if isinstance(data, bytes):
        fmt = RAW_TYPES.get(request.content_type.split(";")[0].strip().lower(), "")
        if fmt not in allowed:
            raise exceptions.UnsupportedMediaType(request.content_type)
        return data, fmt
    upload = request.FILES.get("file") if hasattr(data, "getlist") else None
    if not isinstance(upload, UploadedFile):
        raise exceptions.ValidationError({"file": [
            "Send the file as the request body (Content-Type " + ", ".join(
                t for t, f in RAW_TYPES.items() if f in allowed) + ") or as the multipart field 'file'."]})
    if (upload.size or 0) > max_upload_bytes():
        raise FileTooLarge()
    extension = (upload.name or "").rsplit(".", 1)[-1].lower() if "." in (upload.name or "") else ""
    fmt = EXTENSIONS.get(extension) or RAW_TYPES.get((upload.content_type or "").split(";")[0].lower(), "")
    if fmt not in allowed:
        raise exceptions.ValidationError({"file": ["Name the file .jsonl or .csv (or send its content type)."]})
    return upload.read(), fmt
