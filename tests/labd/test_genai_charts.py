"""The generative section's charts: labelled axes with units, nothing drawn without data, numbers as the tables beside
them print them, and an introduction that holds for tasks with different token counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from labd.evidence.genai_charts import cdf_svg, rates_svg, section
from labd.evidence.html import render_html
from tests.labd.test_report_html import report, task

MS = 1_000_000


def test_cdfs_name_their_axes_and_draw_nothing_without_data() -> None:
    svg = cdf_svg({"chat-40": np.array([50, 60, 140]) * MS, "chat-512": np.array([575, 590]) * MS},
                  "time to first token (ms)", "Time to first token, CDF per task", "fraction of prompts")
    assert "time to first token (ms)" in svg and "fraction of prompts" in svg
    assert "chat-40 (n=3)" in svg and "chat-512 (n=2)" in svg and svg.count("<polyline") == 2
    assert cdf_svg({"chat-40": np.array([], dtype=np.int64)}, "x (ms)", "empty") == ""
    assert rates_svg([{"prompt_tokens": 40, "decode_tokens_per_s": None, "prefill_tokens_per_s": None}]) == ""


def test_rates_print_as_the_table_does() -> None:
    svg = rates_svg([{"prompt_tokens": 40, "decode_tokens_per_s": 68.06, "prefill_tokens_per_s": 1057.2}])
    assert ">68.1<" in svg and ">1057<" in svg and "1,057" not in svg and "prompt tokens" in svg


def _generative(name: str, new_tokens: int, agreement: float | int) -> dict[str, Any]:
    m = {"generative": {"max_new_tokens": new_tokens, "repeat": 0, "by_prompt_length": []},
         "conformance": {"token_agreement": agreement, "n": 4, "matching": 4, "requests": 1, "identical_requests": 1}}
    return task(name, scenario="generative", metrics=m, criteria=[])


def test_the_section_holds_for_tasks_with_different_token_counts() -> None:
    tasks = [_generative("chat-40", 32, 1), _generative("perplexity-256", 8, 1.0)]  # 1: as report.json reads back
    got = section(report(tasks), {})
    assert got is not None and [r["max_new_tokens"] for r in got["tasks"]] == [32, 8]
    assert got["ttft_svg"] == "" and got["rates_svg"] == ""  # no samples, no by-length figures: no empty charts
    html = render_html(report(tasks), {})
    assert "32 tokens are decoded" not in html and "the task's new tokens" in html
    assert html.count("<b>100.00%</b>") == 2 and "Time to first token (CDF" not in html
