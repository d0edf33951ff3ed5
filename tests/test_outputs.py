"""$ANSFLOW_OUTPUT parsing (GitHub's $GITHUB_OUTPUT format)."""

import pytest

from ansflow.outputs import OutputFormatError, parse_outputs


def test_key_value_and_heredoc():
    text = "a=1\nb=x=y\nmulti<<EOF\nline 1\nline 2\nEOF\n\na=2\n"
    assert parse_outputs(text) == {"a": "2", "b": "x=y", "multi": "line 1\nline 2"}


@pytest.mark.parametrize("text, match", [
    ("just words\n", "expected key=value"),
    ("k<<END\nno end\n", "never ends"),
    ("bad key=1\n", "not a valid output name"),
])
def test_bad_lines_are_errors(text, match):
    with pytest.raises(OutputFormatError, match=match):
        parse_outputs(text)
