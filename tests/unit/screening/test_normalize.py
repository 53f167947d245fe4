"""The normaliser: the same pipeline for lexicon terms and texts, with offsets back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parley.screening.normalize import I_OR_L, normalize, stream


def test_full_width_letters_and_digits_become_ascii_lower_case() -> None:
    assert stream("ＫＩＬＬ　ＹＯＵ") == "killyou"
    assert stream("逾期３天") == "逾期3天"


def test_zero_width_and_format_characters_vanish() -> None:
    assert stream("曝\u200b光\u200d\ufeff\u2060\u00ad") == "曝光"


def test_spaces_punctuation_symbols_and_emoji_are_stripped() -> None:
    assert stream("曝 . 光！【上·门】😀") == "曝光上门"


def test_traditional_is_converted_to_simplified_even_when_mixed() -> None:
    assert stream("打斷你的腿") == "打断你的腿"
    assert stream("打斷你的腿") == stream("打断你的腿")
    assert stream("後果自负") == "后果自负"


def test_variants_opencc_leaves_apart_are_folded() -> None:
    assert stream("帳單") == stream("账单")
    assert stream("你給我等著") == stream("你给我等着")
    assert stream("通知您的家人") == stream("通知你的家人")


def test_leetspeak_is_mapped_inside_latin_words() -> None:
    assert stream("k1ll y0u") == f"k{I_OR_L}llyou"
    assert stream("d3adb3at") == "deadbeat"
    assert stream("@$$hole") == "asshole"
    assert stream("5hit") == "shit"


def test_letter_spaced_leetspeak_is_mapped() -> None:
    assert stream("k 1 l l") == f"k{I_OR_L}ll"


def test_digits_outside_latin_words_stay_digits() -> None:
    assert stream("逾期3天") == "逾期3天"
    assert stream("$120.00 due") == "12000due"
    assert stream("期限 30 天") == "期限30天"


def test_combining_marks_and_look_alikes_are_folded() -> None:
    assert stream("Ki\u0308ll") == "kill"
    assert stream("kіll") == "kill"  # Cyrillic і


def test_offsets_point_at_the_original_characters() -> None:
    text = "曝 . 光"
    norm = normalize(text)
    assert norm.text == "曝光"
    assert norm.offsets == (0, 4)
    assert norm.span(text, 0, 1) == "曝 . 光"


def test_offsets_survive_characters_that_vanish_or_expand() -> None:
    text = "a\u200bß!x"
    norm = normalize(text)
    assert norm.text == "assx"
    assert norm.offsets == (0, 2, 2, 4)


@given(st.text(max_size=60))
def test_the_fast_stream_and_the_stream_with_offsets_agree(text: str) -> None:
    norm = normalize(text)
    assert norm.text == stream(text)
    assert len(norm.offsets) == len(norm.text)
    assert list(norm.offsets) == sorted(norm.offsets)
    assert all(0 <= o < len(text) for o in norm.offsets)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_normalising_twice_changes_nothing_for_cjk_and_lower_case_ascii(text: str) -> None:
    once = stream(text)
    if all(c.isascii() and c.islower() or "\u4e00" <= c <= "\u9fff" for c in once):
        assert stream(once) == once
