"""What the command-line tools share (`experiments/cli.py`)."""

import pytest

from experiments import cli


def test_a_compile_cache_path_that_is_a_file_is_a_usage_error(tmp_path, monkeypatch):
    # A UsageError ends the tool with one line and status 2; an OSError would be a traceback.
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("JAXRESTORE_CACHE", str(blocker))
    with pytest.raises(cli.UsageError, match="JAXRESTORE_CACHE"):
        cli.enable_compilation_cache()
    assert blocker.read_text() == "not a folder"
