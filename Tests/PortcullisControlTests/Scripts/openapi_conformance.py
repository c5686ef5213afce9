#!/usr/bin/env python3
"""Checks the running admin API against docs/openapi.yaml with schemathesis.

Run by OpenAPIConformanceTests against a live control plane. schemathesis generates requests
from the document (valid and invalid ones) and checks every response: no 5xx, only documented
status codes, content types and headers, bodies matching the schemas, invalid input refused,
and no operation answering without the credential. Exit status 77: schemathesis missing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--max-examples", default="12")
    args = parser.parse_args()

    cli = shutil.which("schemathesis") or shutil.which("st")
    if cli is None:
        try:
            import schemathesis  # noqa: F401
        except ImportError:
            print("schemathesis is not installed (cluster/setup.sh installs it)", file=sys.stderr)
            return 77
        command = [sys.executable, "-m", "schemathesis.cli"]
    else:
        command = [cli]
    command += [
        "run", os.path.abspath(args.spec),
        "--url", args.url,
        "--header", f"Authorization: Bearer {args.token}",
        "--checks", ",".join([
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_headers_conformance",
            "response_schema_conformance",
            "negative_data_rejection",
            "ignored_auth",
        ]),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", args.max_examples,
        "--workers", "1",
        "--seed", "20261129",
        "--generation-database", "none",
        "--request-timeout", "40",
        "--no-color",
    ]
    print("running:", " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in command), flush=True)
    # schemathesis keeps a cache in its working folder: give it a throwaway one.
    with tempfile.TemporaryDirectory(prefix="schemathesis-") as scratch:
        return subprocess.run(command, cwd=scratch).returncode


if __name__ == "__main__":
    sys.exit(main())
