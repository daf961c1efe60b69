"""OpenAI files for fine-tuning, kept as ConfigMaps in the runtime's namespace.

A file is a ConfigMap named after its id, holding the JSONL under `train.jsonl`: exactly
what a FineTuneJob's `spec.dataset.configMapRef` mounts into the training pod.
"""

import secrets
from typing import Any

from modelkube_operator.k8s.client import Kube

from modelkube_serving.errors import InvalidRequest, NotFound, PayloadTooLarge
from modelkube_serving.finetune.dataset import Dataset, DatasetError, parse_jsonl
from modelkube_serving.protocol_fine_tuning import Upload
from modelkube_serving.services.cluster_calls import checked, found
from modelkube_serving.services.fine_tuning_mapping import page, unix

Obj = dict[str, Any]
FILE_KEY = "train.jsonl"
PURPOSE = "fine-tune"
PURPOSE_LABEL = "modelkube.io/purpose"
FILENAME_ANNOTATION = "modelkube.io/filename"
# A ConfigMap holds at most 1 MiB in all; leave room for its metadata.
MAX_FILE_BYTES = 900 * 1024
_ID_CHARS = set("0123456789abcdef")


def checked_text(upload: Upload) -> str:
    """The upload's JSONL text, once it is known to be trainable; the error names the line."""
    if upload.purpose != PURPOSE:
        raise InvalidRequest(
            f"Only purpose '{PURPOSE}' is supported, got '{upload.purpose}'.", param="purpose"
        )
    if len(upload.content) > MAX_FILE_BYTES:
        raise too_large(f"The file is {len(upload.content)} bytes")
    try:
        text = upload.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = upload.content[: exc.start].count(b"\n") + 1
        raise InvalidRequest(f"{upload.filename} line {line}: not UTF-8", param="file") from exc
    try:
        parse_jsonl(text, upload.filename)
    except DatasetError as exc:
        raise InvalidRequest(f"Invalid file format: {exc}", param="file") from exc
    return text


def too_large(what: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what}; fine-tuning files are stored in a ConfigMap, which holds at most "
        f"{MAX_FILE_BYTES} bytes here (Kubernetes caps a ConfigMap at 1 MiB). Put a larger "
        "dataset on a PVC and create the FineTuneJob directly.",
        param="file",
    )


def file_configmap(file_id: str, filename: str, text: str, namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": file_id,
            "namespace": namespace,
            "labels": {PURPOSE_LABEL: PURPOSE},
            "annotations": {FILENAME_ANNOTATION: filename},
        },
        "data": {FILE_KEY: text},
    }


def openai_file(configmap: Obj) -> Obj | None:
    """The OpenAI file object for a ConfigMap, or None when it is not a fine-tuning file."""
    meta = configmap["metadata"]
    text = (configmap.get("data") or {}).get(FILE_KEY)
    if meta.get("labels", {}).get(PURPOSE_LABEL) != PURPOSE or text is None:
        return None
    return {
        "object": "file",
        "id": meta["name"],
        "bytes": len(text.encode()),
        "created_at": unix(meta.get("creationTimestamp")) or 0,
        "filename": meta.get("annotations", {}).get(FILENAME_ANNOTATION, FILE_KEY),
        "purpose": PURPOSE,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def valid_file_id(file_id: str) -> bool:
    hexdigits = file_id.removeprefix("file-")
    return hexdigits != file_id and 0 < len(hexdigits) <= 64 and set(hexdigits) <= _ID_CHARS


class FilesService:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    async def upload(self, upload: Upload) -> Obj:
        text = checked_text(upload)
        file_id = f"file-{secrets.token_hex(12)}"
        body = file_configmap(file_id, upload.filename, text, self.namespace)
        created = await checked(self.kube.create(body), self.namespace)
        file = openai_file(created)
        assert file is not None
        return file

    async def retrieve(self, file_id: str) -> Obj:
        file = openai_file(await self._configmap(file_id, _no_such_file(file_id)))
        if file is None:
            raise _no_such_file(file_id)
        return file

    async def list(self, after: str | None, limit: int, order: str, purpose: str | None) -> Obj:
        if purpose not in (None, PURPOSE):
            return page([], None, limit)  # only fine-tuning files live here
        selector = f"{PURPOSE_LABEL}={PURPOSE}"
        work = self.kube.list("v1", "ConfigMap", self.namespace, selector)
        items = await checked(work, self.namespace)
        files = [f for f in map(openai_file, items) if f is not None]
        files.sort(key=lambda f: (f["created_at"], f["id"]), reverse=order != "asc")
        return page(files, after, limit)

    async def dataset(self, file_id: str) -> Dataset:
        """A training file's examples; errors are about the `training_file` parameter."""
        missing = InvalidRequest(f"invalid training_file: {file_id}", param="training_file")
        data = (await self._configmap(file_id, missing)).get("data") or {}
        if FILE_KEY not in data:
            raise missing
        try:
            return parse_jsonl(data[FILE_KEY], FILE_KEY)
        except DatasetError as exc:
            raise InvalidRequest(f"Invalid training_file: {exc}", param="training_file") from exc

    async def _configmap(self, file_id: str, missing: InvalidRequest | NotFound) -> Obj:
        if not valid_file_id(file_id):
            raise missing
        work = self.kube.get("v1", "ConfigMap", self.namespace, file_id)
        return await found(work, self.namespace, missing)


def _no_such_file(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id")
