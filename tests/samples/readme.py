"""The verification samples of README.md, found by their markers and run as written.

Each sample is a fenced block right after an HTML comment naming it:

    <!-- sample: python-hmac -->
    ```python
    def verify_webhook(raw_body, headers, secret): ...
    ```

Python samples define `verify_webhook(raw_body, headers, secret)` and run in this
process; Node.js samples define `verifyWebhook(rawBody, headers, secret)` and run
under `node` through tests/node/run-sample.js. Either returns the parsed message
or raises/throws.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NODE_DIR = ROOT / "tests" / "node"

_SAMPLE = re.compile(
    r"^<!-- sample: (?P<name>[a-z0-9-]+) -->\n```(?P<language>[a-z]+)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
_FENCE_LANGUAGE = {"python": "python", "js": "node", "javascript": "node"}


@dataclass(frozen=True)
class Sample:
    name: str
    language: str  # "python" or "node"
    code: str


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    message: Any = None  # what the sample returned
    error: str = ""  # the exception's class name
    detail: str = ""  # and its message


def readme_samples() -> dict[str, Sample]:
    """Every marked sample of README.md, by name."""
    samples: dict[str, Sample] = {}
    for match in _SAMPLE.finditer(README.read_text(encoding="utf-8")):
        name = match["name"]
        assert name not in samples, f"README.md marks two samples {name!r}"
        assert match["language"] in _FENCE_LANGUAGE, f"sample {name!r}: unknown fence language {match['language']!r}"
        samples[name] = Sample(name, _FENCE_LANGUAGE[match["language"]], match["code"])
    return samples


def run_python(sample: Sample, body: bytes, headers: dict[str, str], secret: str) -> Outcome:
    namespace: dict[str, Any] = {"__name__": f"readme_{sample.name.replace('-', '_')}"}
    exec(compile(sample.code, f"README.md ({sample.name})", "exec"), namespace)
    try:
        message = namespace["verify_webhook"](body, dict(headers), secret)
    except Exception as error:
        return Outcome(False, error=type(error).__name__, detail=str(error))
    return Outcome(True, message)


def run_node(sample: Sample, body: bytes, headers: dict[str, str], secret: str) -> Outcome:
    request = {
        "name": sample.name,
        "code": sample.code,
        "body_base64": base64.b64encode(body).decode("ascii"),
        "headers": headers,
        "secret": secret,
    }
    done = subprocess.run(
        ["node", str(NODE_DIR / "run-sample.js")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"node failed on sample {sample.name!r}:\n{done.stderr}"
    result = json.loads(done.stdout)
    if result["accepted"]:
        return Outcome(True, result["message"])
    return Outcome(False, error=result["error"]["name"], detail=result["error"]["message"])


def run(sample: Sample, body: bytes, headers: dict[str, str], secret: str) -> Outcome:
    """What the sample makes of a request with this raw body, headers and secret."""
    runner = run_python if sample.language == "python" else run_node
    return runner(sample, body, headers, secret)
