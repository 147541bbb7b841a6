"""Shared fixtures of the Python binding's tests.

The tests import `sibyl` as installed (CTest's python_binding test pip-installs the package into
a fresh virtual environment and runs them with its interpreter; SIBYL_EXPECT_INSTALLED=1 then
checks that the import did not come from the source tree). The library comes from
$SIBYL_LIBRARY as usual; the model is the repository's tiny-reasoner.
"""
import json
import os

import pytest

import sibyl

TESTS = os.path.dirname(os.path.abspath(__file__))
BINDING = os.path.dirname(TESTS)
REPO = os.path.dirname(os.path.dirname(BINDING))
MODEL_DIR = os.environ.get("SIBYL_TEST_MODEL", os.path.join(REPO, "models", "tiny-reasoner"))
TEST_DATA = os.path.join(REPO, "tests", "data")


def pytest_report_header(config):
    return "sibyl %s from %s; libsibyl %s from %s" % (sibyl.__version__, os.path.dirname(sibyl.__file__),
                                                     sibyl.library_version(), sibyl.library_path)


@pytest.fixture(scope="session")
def model():
    """The tiny-reasoner in exact precision (the eval reference is float32 Hugging Face)."""
    with sibyl.Model(MODEL_DIR, precision="exact") as m:
        yield m


@pytest.fixture
def session(model):
    with model.session() as s:
        yield s


@pytest.fixture(scope="session")
def eval_results():
    with open(os.path.join(MODEL_DIR, "eval.public.json"), encoding="utf-8") as f:
        return json.load(f)["results"]


EOS_TEXT = "<｜end▁of▁sentence｜>"


def expected_channels(result):
    """(reasoning, answer) of a reference output: its text split at </think>, without the tag,
    the format's blank lines and the end-of-sequence token."""
    text = result["output_text"]
    close = text.index("</think>")
    answer = text[close + len("</think>"):].lstrip("\n")
    assert answer.endswith(EOS_TEXT)
    return text[:close].rstrip("\n"), answer[:-len(EOS_TEXT)]


def user(text):
    return [{"role": "user", "content": text}]
