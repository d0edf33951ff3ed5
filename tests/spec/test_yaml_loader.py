"""Safe YAML loading: positions, refused tags, bounded aliases, duplicate keys, bad bytes."""

import time

import pytest

from ansflow.spec.yaml_loader import Position, YamlError, decode_text, load_located


def test_positions_of_keys_and_values_are_recorded_1_based():
    located = load_located("a:\n  b: [1, 2]\n")
    assert located.data == {"a": {"b": [1, 2]}}
    assert located.keys[("a", "b")] == Position(2, 3)
    assert located.values[("a", "b", 1)] == Position(2, 10)


@pytest.mark.parametrize("text", [
    "x: !!python/object/apply:os.system ['touch /tmp/ansflow-pwned']",
    "x: !!python/name:os.system",
    "x: !custom 1",
])
def test_yaml_tags_are_refused_and_never_constructed(text, tmp_path):
    with pytest.raises(YamlError, match="not allowed") as info:
        load_located(text)
    assert info.value.position == Position(1, 4)


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    start = time.perf_counter()
    with pytest.raises(YamlError, match="alias"):
        load_located("\n".join(lines))
    assert time.perf_counter() - start < 5  # generous: a bomb expands to 9^9 values


def test_duplicate_keys_are_errors_at_the_second_key():
    with pytest.raises(YamlError, match="duplicate key 'name'") as info:
        load_located("name: a\nname: b\n")
    assert info.value.position == Position(2, 1)


def test_syntax_error_and_empty_file_have_positions():
    with pytest.raises(YamlError, match="syntax") as info:
        load_located("steps:\n  - name: [\n")
    assert info.value.position is not None
    with pytest.raises(YamlError, match="empty"):
        load_located("# only a comment\n")


def test_bad_utf8_points_at_the_byte():
    with pytest.raises(YamlError, match="UTF-8") as info:
        decode_text(b"steps:\n  - name: \xff\n")
    assert info.value.position == Position(2, 11)


def test_dates_stay_text():
    assert load_located("d: 2024-01-02\n").data == {"d": "2024-01-02"}
