"""The fast path for plain ``NAME="value"`` / ``NAME=[K="v"]`` templates gives exactly
what oned's scanner and grammar give (differential, on random near-plain texts)."""

from __future__ import annotations

import random
import re

from twisted.trial.unittest import SynchronousTestCase

from oned.template import parser
from oned.template.parser import TemplateSyntaxError, parse_text

_NEVER = re.compile(r"(?!)")
_VALUE_CHARS = ["a", "Z", "0", "_", " ", "\t", "=", "#", ",", ".", "é", "<", "-", "/"]
_EDGE = ["\n", '"', "\\", "[", "]", "]]>", "\r", " ", "\t", "\0", ",", "="]


def slow(text: str) -> object:
    saved = parser._SIMPLE
    parser._SIMPLE = _NEVER
    try:
        return _outcome(text)
    finally:
        parser._SIMPLE = saved


def _outcome(text: str) -> object:
    try:
        return parse_text(text).items
    except TemplateSyntaxError as exc:
        return ("error", str(exc))


def _name(rng: random.Random) -> str:
    return "".join(rng.choice("abcXYZ_019") for _ in range(rng.randint(1, 6)))


def _value(rng: random.Random) -> str:
    return "".join(rng.choice(_VALUE_CHARS) for _ in range(rng.randint(0, 8)))


def _line(rng: random.Random) -> str:
    if rng.random() < 0.3:
        pairs = [f'{_name(rng)}="{_value(rng)}"' for _ in range(rng.randint(0, 3))]
        return f"{_name(rng)}=[{','.join(pairs)}]"
    return f'{_name(rng)}="{_value(rng)}"'


def _template(rng: random.Random) -> str:
    text = "\n".join(_line(rng) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.3:
        text += "\n"
    if rng.random() < 0.5:  # break it somewhere
        at = rng.randint(0, len(text))
        text = text[:at] + rng.choice(_EDGE) + text[at:]
    return text


class SimpleTemplateTests(SynchronousTestCase):
    def test_fast_path_matches_the_scanner(self) -> None:
        rng = random.Random(1234)
        fast_taken = 0
        for _ in range(4000):
            text = _template(rng)
            if parser._SIMPLE.fullmatch(text.split("\0", 1)[0]):
                fast_taken += 1
            self.assertEqual(_outcome(text), slow(text), repr(text))
        self.assertGreater(fast_taken, 1000)

    def test_bench_and_nic_templates(self) -> None:
        for text in (
            'NAME="bench-1"\nCPU="0.1"\nVCPU="1"\nMEMORY="64"\nDESCRIPTION="bench"',
            'NAME="v"\nCPU="1"\nMEMORY="64"\nNIC=[NETWORK_ID="3"]\nNIC=[NETWORK_ID="4",IP="10.0.0.9"]',
            'A=""\nB=[]\nc=" spaced value "\nA="again"',
        ):
            self.assertTrue(parser._SIMPLE.fullmatch(text))
            self.assertEqual(_outcome(text), slow(text))
