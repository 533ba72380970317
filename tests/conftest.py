"""Shared test setup: offline Hugging Face and a private pydocs cache."""

from __future__ import annotations

import os
import shutil
import tempfile

# The pydocs cache goes to a folder of this test session (subprocesses inherit it), never the
# user's ~/.cache/polysemy: a killed harvest test leaves a temporary file behind by design.
_CACHE = tempfile.mkdtemp(prefix="polysemy-test-cache-")
os.environ["POLYSEMY_CACHE"] = _CACHE
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)
