"""Reading a repository back without the library: plain files, botocore, or GCS's JSON API."""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from servers import s3_client
from write.helpers import fetch

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


#: The object ``key`` of the repository at ``url`` (file, s3, gs), None if missing: the one
#: raw reader of the suites, in tests/write/helpers.py.
read = fetch


def _split(url: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(url)
    return parsed.netloc, parsed.path.strip("/")


def keys(url: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` in the repository at ``url``."""
    if url.startswith("file://"):
        root = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
        base = root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())
    bucket, repo = _split(url)
    client = s3_client(os.environ["AWS_ENDPOINT_URL_S3"])
    try:
        found: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{repo}/{prefix}"
        ):
            found += [o["Key"][len(repo) + 1 :] for o in page.get("Contents", [])]
        return sorted(found)
    finally:
        client.close()


def experiment_json(url: str, experiment_id: str) -> dict[str, Any] | None:
    data = read(url, f"metadata/experiments/{experiment_id}.json")
    return None if data is None else dict(json.loads(data))


def tar_members(data: bytes) -> dict[str, bytes]:
    """Member name -> content of a gzipped tarball, read with the standard library."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[member.name] = extracted.read()
        return out


def journal_lines(project: Path) -> list[bytes]:
    """Every raw line of every journal of ``project``'s spool."""
    lines: list[bytes] = []
    for path in sorted((project / ".replicate" / "spool" / "journal").glob("*.jsonl")):
        lines += path.read_bytes().split(b"\n")[:-1]
    return lines
