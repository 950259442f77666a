"""Prompt text: the three Appendix D templates, the 3.1.1 system prompt, seeded template choice, rendering."""
import numpy as np

from data_prep.rendering.prompts import (
    INSTRUCTION_TEMPLATES,
    SYSTEM_PROMPT,
    draw_template_ids,
    format_candidates,
    format_event,
    format_next_context,
    render_histories,
    render_instruction,
)

HISTORY = "(Monday, 8, home, Music), (Monday, 9, workplace, Reading)"
NEXT = "(Monday, 12, workplace)"
CANDS = "Music, Reading, Video"


def test_instruct1_wording():
    assert render_instruction(0, HISTORY, NEXT, CANDS) == (
        "This user has done behaviors (Monday, 8, home, Music), (Monday, 9, workplace, Reading) in the previous. "
        "Day of the week, the hour, and the place of the next behavior are (Monday, 12, workplace), respectively. "
        "Choose the answer from the following behavior candidate set: Music, Reading, Video. The answer is")


def test_instruct2_wording():
    assert render_instruction(1, HISTORY, NEXT, CANDS) == (
        "The user's historical behavior information sequence is: (Monday, 8, home, Music), (Monday, 9, "
        "workplace, Reading). Day of the week, the hour, and the place of the next behavior are (Monday, 12, "
        "workplace), respectively. Given the following behavior candidate set: Music, Reading, Video, recommend "
        "one intention for this user to do next. The intent you recommend is")


def test_instruct3_wording_with_typos_fixed():
    text = render_instruction(2, HISTORY, NEXT, CANDS)
    assert text == (
        "The behavior history of this user is: (Monday, 8, home, Music), (Monday, 9, workplace, Reading). "
        "Day of the week, the hour, and the place of the next behavior are (Monday, 12, workplace), "
        "respectively. Recommend a next intention for this user to do from the following behavior candidate "
        "set: Music, Reading, Video. The recommendation is")
    assert "].Day" not in text and ".The" not in text and "[" not in text


def test_templates_end_with_their_answer_stem_and_name_every_slot():
    stems = ("The answer is", "The intent you recommend is", "The recommendation is")
    for template, stem in zip(INSTRUCTION_TEMPLATES, stems):
        assert template.endswith(stem)
        for slot in ("{history}", "{next_context}", "{candidates}"):
            assert template.count(slot) == 1


def test_system_prompt_is_role_playing_plus_task_definition():
    assert SYSTEM_PROMPT.startswith("You are a smart user's mobile phone assistant, which can infer the user's "
                                    "mobile phone behavior preferences")
    assert "predict the next behavior the user will do from the candidate set" in SYSTEM_PROMPT.lower()


def test_template_choice_is_seeded_and_uses_all_three():
    ids = draw_template_ids(300, np.random.default_rng(5))
    assert set(ids.tolist()) == {0, 1, 2}
    assert np.array_equal(ids, draw_template_ids(300, np.random.default_rng(5)))
    assert not np.array_equal(ids, draw_template_ids(300, np.random.default_rng(6)))
    assert min(np.bincount(ids)) > 60          # roughly uniform


def test_event_context_and_candidate_formats():
    assert format_event(6, 23, "home", "Watching videos") == "(Sunday, 23, home, Watching videos)"
    assert format_next_context(0, 7, "workplace") == "(Monday, 7, workplace)"
    assert format_candidates(["A b", "C"]) == "A b, C"


def test_render_histories_matches_one_by_one_formatting():
    rng = np.random.default_rng(0)
    places, behaviors = ["home", "work", "out"], ["Music", "Reading", "Video", "Taxi"]
    shape = (50, 6)
    wd, hr = rng.integers(0, 7, shape), rng.integers(0, 24, shape)
    pl, bh = rng.integers(0, 3, shape), rng.integers(0, 4, shape)
    got = render_histories(wd.astype(np.int8), hr.astype(np.int8), pl.astype(np.int32), bh.astype(np.int32),
                           places, behaviors)
    want = [", ".join(format_event(wd[i, j], hr[i, j], places[pl[i, j]], behaviors[bh[i, j]])
                      for j in range(shape[1])) for i in range(shape[0])]
    assert got == want
