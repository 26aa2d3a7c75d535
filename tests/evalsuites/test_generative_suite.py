"""Validating generative tasks: the scenario's settings and rules, the metrics criteria may grade, and the deep checks
of a decoder model against its prompt set and golden decode (on a copy of terminal-genai sharing its files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from evalsuites import builtin_suites_dir, load_suite, validate_suite

GENAI = builtin_suites_dir() / "terminal-genai"
Edit = Callable[..., str]


@pytest.fixture
def genai_copy(tmp_path: Path) -> Path:
    """terminal-genai's suite.toml in a directory of its own; models/ and data/ link to the shipped files."""
    dst = tmp_path / "terminal-genai"
    dst.mkdir()
    (dst / "suite.toml").write_text((GENAI / "suite.toml").read_text())
    for sub in ("models", "data"):
        (dst / sub).symlink_to(GENAI / sub)
    return dst


def _messages(path: Path, deep: bool = False) -> list[str]:
    return [p.format() for p in validate_suite(path, deep=deep)]


def test_the_shipped_suite_loads_with_its_generative_tasks() -> None:
    suite = load_suite(GENAI)
    assert [t.scenario for t in suite.tasks] == ["generative"] * 4
    assert suite.task("chat-512").settings["max_new_tokens"] == 32
    assert suite.grading is not None and [lv.name for lv in suite.grading.levels] == [
        "GA-1 basic", "GA-2 interactive", "GA-3 fluent"]
    assert "not an industry standard" in suite.grading.scheme
    graded = {c.metric for c in suite.criteria}
    assert {"ttft_ms.p90", "tpot_ms.p90", "decode_tokens_per_s", "peak_rss_mb", "conformance.token_agreement",
            "perplexity.ratio"} <= graded


@pytest.mark.parametrize("pairs,expected", [
    ((('dataset = "prompts-40"\n', ""),), "tasks[0].dataset: a generative task needs a dataset of prompts"),
    ((("max_new_tokens = 32\n", "max_new_tokens = 32\nprofile = true\n"),),
     "tasks[0].settings.profile: the generative scenario records no operator profile"),
    ((('golden = "perplexity-reference"\n', ""),),
     "tasks[3].settings.perplexity_windows: perplexity compares with reference log-likelihoods"),
    ((("max_new_tokens = 32\n", "max_new_tokens = 0\n"),), "tasks[0].settings.max_new_tokens: must be an integer >= 1"),
    ((("max_new_tokens = 32\n", "max_new_tokens = 32\nbatch_sizes = [1]\n"),),
     "unknown setting 'batch_sizes' for scenario 'generative'"),
    ((('threshold = 0.75\n', "threshold = 75.0\n"),), "conformance.token_agreement is a fraction; 75.0 is outside"),
    ((('task = "perplexity-256"\nmetric = "perplexity.ratio"', 'task = "chat-40"\nmetric = "perplexity.ratio"'),),
     "perplexity.ratio needs settings.perplexity_windows >= 1 on task 'chat-40'"),
    ((('golden = "prompts-40-reference"\n', ""),),
     "conformance.token_agreement needs a generative task with a golden decode; task 'chat-40' has no golden"),
])
def test_generative_rules(genai_copy: Path, edit: Edit, pairs: tuple[tuple[str, str], ...], expected: str) -> None:
    edit(genai_copy, *pairs, count=1)
    messages = _messages(genai_copy)
    assert any(expected in m for m in messages), messages


def test_generative_metrics_need_a_generative_task(smoke_copy: Path, edit: Edit) -> None:
    edit(smoke_copy, ('metric = "accuracy"', 'metric = "ttft_ms.p90"'), count=1)
    messages = _messages(smoke_copy)
    assert any("metric 'ttft_ms.p90' needs a task with scenario = \"generative\"" in m for m in messages), messages


@pytest.mark.parametrize("pairs,expected", [
    ((("max_new_tokens = 32\n", "max_new_tokens = 33\n"),),
     "tasks[0].golden: 'generated_ids' is [6, 32]: it must cover every generated token"),
    ((("perplexity_windows = 4\n", "perplexity_windows = 9\n"),),
     "tasks[3].settings.perplexity_windows: 9 windows, but dataset 'perplexity-text' holds 8 rows"),
    ((("perplexity_windows = 4\n", "perplexity_windows = 4\nperplexity_tokens = 300\n"),),
     "tasks[3].settings.perplexity_tokens: scores 300 tokens of windows of 256"),
    ((('dataset = "prompts-40"\ngolden = "prompts-40-reference"', 'dataset = "prompts-40-reference"\n'
       'golden = "prompts-40-reference"'),), "artifact 'prompts-40-reference' is a golden, not a dataset"),
    ((('golden = "prompts-40-reference"', 'golden = "perplexity-reference"'),),
     "conformance.token_agreement is graded, but golden 'perplexity-reference' holds no 'generated_ids'"),
    ((('model = "smollm2-135m-q4"\ndataset = "prompts-40"', 'model = "smollm2-135m-q4"\ndataset = "prompts-40"'),),
     None),
])
def test_deep_generative_checks(genai_copy: Path, edit: Edit, pairs: tuple[tuple[str, str], ...],
                                expected: str | None) -> None:
    edit(genai_copy, *pairs, count=1)
    messages = _messages(genai_copy, deep=True)
    if expected is None:
        assert messages == []
    else:
        assert any(expected in m for m in messages), messages
