# ---------------------------------------------------------------------------------------------
# docs/errors.md against pcdsl/diagnostics/messages.py, so the catalogue cannot drift.
#
# The page has one `## CODE: title` section per entry of messages.MESSAGES, in code order. Each
# section must repeat the message template and explanation as defined, say how to fix the
# error, and every ```pc example in it must still fail with that section's code.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcdsl.diagnostics import PcdslError, messages
from pcdsl.pipeline import compile_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
HEADING = re.compile(r"^## (E\d{3}): (\S.*)$", re.MULTILINE)


def _sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    matches = list(HEADING.finditer(text))
    return {m.group(1): text[m.end():matches[i + 1].start() if i + 1 < len(matches) else len(text)]
            for i, m in enumerate(matches)}


def _flat(text: str) -> str:
    return " ".join(text.split())


SECTIONS = _sections()


def test_documented_codes_equal_the_defined_codes():
    assert set(SECTIONS) == set(messages.MESSAGES)


def test_codes_are_documented_once_in_code_order():
    codes = HEADING.findall(DOC.read_text(encoding="utf-8"))
    codes = [code for code, _ in codes]
    assert codes == sorted(set(codes))


@pytest.mark.parametrize("code", sorted(messages.MESSAGES))
def test_section_repeats_the_message_and_explanation(code):
    section = _flat(SECTIONS.get(code, ""))
    message = messages.MESSAGES[code]
    assert f"Message: `` {message.template} ``" in section
    assert _flat(message.explanation) in section
    assert "How to fix it:" in section


@pytest.mark.parametrize("code", sorted(messages.MESSAGES))
def test_examples_still_produce_their_code(code):
    for example in re.findall(r"```pc\n(.*?)```", SECTIONS.get(code, ""), flags=re.DOTALL):
        with pytest.raises(PcdslError) as info:
            compile_text(example, "example.pc")
        assert info.value.code == code, info.value.render()


def test_every_code_that_a_model_file_can_trigger_has_an_example():
    without = {code for code, section in SECTIONS.items() if "```pc\n" not in section}
    # an unreadable file, an expression thousands of operators deep, a command-line override
    assert without == {"E001", "E005", "E501"}
