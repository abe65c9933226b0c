"""The prompt registry's pure parts: attribution, templates, the deterministic judge, the
regression summary and the promotion rule."""

from __future__ import annotations

import hashlib

import pytest

from batchin.config import Settings
from batchin.core.context import CallContext, Principal
from batchin.core.experiments.judges import DeterministicReplayJudge, cosine, normalise
from batchin.core.experiments.replay import TemplateMismatch, with_template
from batchin.core.prompts.attribution import attribute
from batchin.core.prompts.promotion import LATENCY_NOISE_MS, SampleOutcome, decide, summarise
from batchin.core.prompts.templates import MissingVariable, extract, render, variables_of
from batchin.errors import InvalidRequest

SYSTEM = "You are a support agent.\nAnswer in one line."


def sha(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# -- attribution ------------------------------------------------------------------------------------


def test_the_header_names_the_version_and_its_registry() -> None:
    found = attribute("support@v2", None, SYSTEM)
    assert found is not None
    assert (found.registry_id, found.version_id, found.system_text) == ("support", "support@v2", SYSTEM)


def test_a_bare_name_is_its_own_registry_and_version() -> None:
    found = attribute("greeting-v7", None, None)
    assert found is not None
    assert (found.registry_id, found.version_id) == ("greeting-v7", "greeting-v7")


def test_metadata_names_the_version_when_the_header_is_absent() -> None:
    found = attribute("default", {"prompt_version": "faq@3"}, SYSTEM)
    assert found is not None
    assert (found.registry_id, found.version_id) == ("faq", "faq@3")


def test_the_header_wins_over_metadata() -> None:
    found = attribute("support@v2", {"prompt_version": "faq@3"}, SYSTEM)
    assert found is not None
    assert found.version_id == "support@v2"


def test_unnamed_calls_are_derived_from_the_system_prompt() -> None:
    found = attribute("default", None, SYSTEM)
    assert found is not None
    registry = f"sys-{sha('You are a support agent.', 10)}"
    assert found.registry_id == registry
    assert found.version_id == f"{registry}@{sha(SYSTEM, 12)}"
    assert found.display_name == "You are a support agent."


def test_a_prompt_edited_below_its_first_line_is_a_new_version_of_the_same_registry() -> None:
    first = attribute("default", None, SYSTEM)
    second = attribute("default", None, SYSTEM + " Be brief.")
    assert first is not None
    assert second is not None
    assert first.registry_id == second.registry_id
    assert first.version_id != second.version_id


def test_metadata_can_name_the_registry_of_a_derived_version() -> None:
    found = attribute("default", {"prompt_registry": "support"}, SYSTEM)
    assert found is not None
    assert found.version_id == f"support@{sha(SYSTEM, 12)}"


def test_a_call_without_name_or_system_prompt_is_not_attributed() -> None:
    assert attribute("default", {"prompt_registry": "support"}, None) is None


@pytest.mark.parametrize(
    ("header", "metadata", "param"),
    [
        ("sup port@v1", None, "X-BatchIn-Prompt-Version"),
        ("support@v1/x", None, "X-BatchIn-Prompt-Version"),
        ("@v1", None, "X-BatchIn-Prompt-Version"),
        ("default", {"prompt_version": "a@b@c"}, "metadata.prompt_version"),
        ("default", {"prompt_registry": "no/slashes"}, "metadata.prompt_registry"),
    ],
)
def test_malformed_names_are_refused(header: str, metadata: dict[str, str] | None, param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        attribute(header, metadata, SYSTEM)
    assert refused.value.param == param


# -- templates and replay messages -------------------------------------------------------------------


def test_template_variables_render_and_are_read_back() -> None:
    template = "You help {{ product }} users in {{lang}}. {{product}} only."
    assert variables_of(template) == ["product", "lang"]
    text = render(template, {"product": "Acme", "lang": "French"})
    assert text == "You help Acme users in French. Acme only."
    assert extract(template, text) == {"product": "Acme", "lang": "French"}
    assert extract(template, "Something else entirely.") is None


def test_rendering_without_a_value_names_the_variable() -> None:
    with pytest.raises(MissingVariable) as missing:
        render("Hi {{name}}", {})
    assert missing.value.name == "name"


def test_a_replay_swaps_the_system_prompt_keeping_the_conversation() -> None:
    messages = [
        {"role": "system", "content": "You help Acme users."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    replayed = with_template(messages, "You help {{product}} users.", "Support for {{product}}; be brief.")
    assert replayed == [{"role": "system", "content": "Support for Acme; be brief."}, *messages[1:]]


def test_a_replay_without_the_candidates_variables_cannot_be_made() -> None:
    messages = [{"role": "system", "content": "Plain prompt"}, {"role": "user", "content": "Hi"}]
    with pytest.raises(TemplateMismatch, match="product"):
        with_template(messages, "Plain prompt", "For {{product}}")


# -- judges ----------------------------------------------------------------------------------------


async def test_deterministic_replay_passes_exact_and_normalised_matches_only() -> None:
    judge = DeterministicReplayJudge()
    ctx = CallContext(principal=Principal("u", "k", "bk_", 60, None), request_id="req_1")
    exact = await judge.score(ctx, "Paris.", "Paris.")
    assert (exact.similarity, exact.passed) == (1.0, True)
    loose = await judge.score(ctx, "  The answer is Paris.", "the answer   is paris")
    assert (loose.similarity, loose.passed) == (1.0, True)
    other = await judge.score(ctx, "The answer is Paris.", "The answer is Rome.")
    assert other.passed is False
    assert 0.5 < other.similarity < 1.0


def test_normalise_folds_case_space_and_edge_punctuation() -> None:
    assert normalise('  "Hello,   World!"\n') == "hello, world"


def test_cosine_of_parallel_and_orthogonal_vectors() -> None:
    assert cosine([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == 0.0


# -- regression summary and promotion rule ----------------------------------------------------------


def outcome(
    passed: bool, base_ms: int = 100, cand_ms: int = 100, base_cost: int = 1000, cand_cost: int = 1000
) -> SampleOutcome:
    return SampleOutcome(passed, 1.0 if passed else 0.25, base_ms, cand_ms, base_cost, cand_cost)


def test_summary_counts_and_averages() -> None:
    report = summarise([outcome(True, 100, 120), outcome(False, 200, 180), outcome(True)])
    assert (report.sample_count, report.pass_count, report.fail_count) == (3, 2, 1)
    assert report.pass_rate == 0.6667
    assert report.avg_similarity == 0.75
    assert (report.baseline_avg_latency_ms, report.candidate_avg_latency_ms) == (133, 133)


def test_samples_that_could_not_run_count_as_failures_but_not_in_latency() -> None:
    broken = SampleOutcome(False, 0.0, 100, None, 1000, None)
    report = summarise([outcome(True, 100, 150), broken])
    assert (report.pass_count, report.fail_count) == (1, 1)
    assert (report.baseline_avg_latency_ms, report.candidate_avg_latency_ms) == (100, 150)


def test_promotion_needs_the_pass_rate() -> None:
    settings = Settings(prompt_promotion_min_pass_rate=0.9)
    promote, reason = decide(summarise([outcome(True)] * 8 + [outcome(False)] * 2), settings)
    assert promote is False
    assert reason.startswith("pass rate 80% (8/10) is below the required 90%")
    assert decide(summarise([outcome(True)] * 9 + [outcome(False)]), settings)[0] is True


def test_promotion_refuses_a_slower_candidate() -> None:
    settings = Settings(prompt_promotion_max_latency_increase=0.25)
    promote, reason = decide(summarise([outcome(True, 400, 520)]), settings)
    assert promote is False
    assert "latency 520 ms vs the baseline's 400 ms" in reason
    assert decide(summarise([outcome(True, 400, 500)]), settings)[0] is True


def test_latency_differences_within_timer_noise_are_ignored() -> None:
    settings = Settings(prompt_promotion_max_latency_increase=0.0)
    assert decide(summarise([outcome(True, 2, 2 + LATENCY_NOISE_MS)]), settings)[0] is True


def test_promotion_refuses_a_costlier_candidate() -> None:
    settings = Settings(prompt_promotion_max_cost_increase=0.1)
    promote, reason = decide(summarise([outcome(True, base_cost=1000, cand_cost=1200)]), settings)
    assert promote is False
    assert "average cost 1200 vs the baseline's 1000 micro-cents" in reason
    assert decide(summarise([outcome(True, base_cost=1000, cand_cost=1100)]), settings)[0] is True


def test_nothing_to_judge_is_never_promoted() -> None:
    assert decide(summarise([]), Settings())[0] is False
