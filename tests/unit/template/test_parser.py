"""Template parser and rendering (oned's template_syntax.y behaviour)."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oned.template import Template, TemplateSyntaxError, parse_str_or_xml, parse_text


class ParseTextTests(SynchronousTestCase):
    def test_singles_and_vectors(self) -> None:
        """Names are upper-cased; vectors keep keys; repeated names form a multimap."""
        tmpl = parse_text(
            'name = "a b"\nCPU=1.0 # comment\nDISK=[ image = x, size="2" ]\nDISK=[A=1]'
        )
        self.assertEqual(tmpl.get("NAME"), "a b")
        self.assertEqual(tmpl.get("CPU"), "1.0")
        self.assertEqual(tmpl.vectors("DISK"), [{"IMAGE": "x", "SIZE": "2"}, {"A": "1"}])

    def test_quoted_escape_and_multiline(self) -> None:
        """Only \\" is an escape; quoted values may span lines."""
        tmpl = parse_text('A = "x\\"y\\z"\nB = "l1\nl2"')
        self.assertEqual(tmpl.get("A"), 'x"y\\z')
        self.assertEqual(tmpl.get("B"), "l1\nl2")

    def test_empty_value_and_empty_vector(self) -> None:
        """``NAME =`` gives an empty value and ``V = []`` an empty vector."""
        tmpl = parse_text("A =\nV = []\n")
        self.assertEqual(tmpl.get("A"), "")
        self.assertEqual(tmpl.vectors("V"), [{}])

    def test_first_duplicate_key_wins_in_vector(self) -> None:
        """Duplicate keys inside a vector keep the first value."""
        self.assertEqual(parse_text("V=[A=1,A=2]").vectors("V"), [{"A": "1"}])

    def test_syntax_errors(self) -> None:
        """Malformed input raises with a position."""
        for bad in ("A", "A = [B=1", "= 3", "A = x y", "A=[B]"):
            with self.assertRaises(TemplateSyntaxError, msg=bad):
                parse_text(bad)

    def test_open_quote_is_a_plain_value(self) -> None:
        """Like oned's scanner, an unterminated quote is part of a plain value."""
        self.assertEqual(parse_text('A = "open\nB=1').items, [("A", '"open'), ("B", "1")])

    def test_cdata_terminator_rejected(self) -> None:
        """A value containing ]]> aborts the grammar: "Parse error." without detail."""
        with self.assertRaises(TemplateSyntaxError) as caught:
            parse_text('A = "x]]>y"')
        self.assertEqual(caught.exception.parse_error, "Parse error.")

    def test_xml_input(self) -> None:
        """Input starting with < is XML: leaves are singles, nested elements vectors."""
        tmpl = parse_str_or_xml("<TEMPLATE><A> 1 </A><V><K>v</K></V></TEMPLATE>")
        self.assertEqual(tmpl.get("A"), "1")
        self.assertEqual(tmpl.vectors("V"), [{"K": "v"}])

    def test_xml_entities_not_expanded(self) -> None:
        """XML templates with a DTD/entities do not expand them."""
        bomb = '<!DOCTYPE t [<!ENTITY a "aaaa">]><TEMPLATE><A>&a;</A></TEMPLATE>'
        try:
            tmpl = parse_str_or_xml(bomb)
        except TemplateSyntaxError:
            return
        self.assertNotEqual(tmpl.get("A"), "aaaa")

    def test_render_sorted_cdata(self) -> None:
        """Rendering sorts names and vector keys and wraps values in CDATA."""
        tmpl = parse_text("B=2\nA=[Z=1,Y=2]\nB=1")
        self.assertEqual(
            tmpl.to_xml(),
            "<TEMPLATE><A><Y><![CDATA[2]]></Y><Z><![CDATA[1]]></Z></A>"
            "<B><![CDATA[2]]></B><B><![CDATA[1]]></B></TEMPLATE>",
        )

    def test_merge_replaces_names(self) -> None:
        """Merge drops every attribute named in the new template, then adds them."""
        tmpl = parse_text("A=1\nA=2\nB=3\nV=[K=1]")
        tmpl.merge(parse_text("A=9\nV=[]"))
        self.assertEqual(tmpl.get("A"), "9")
        self.assertEqual(tmpl.get("B"), "3")
        self.assertEqual(tmpl.vectors("V"), [])


_names = st.text(alphabet=string.ascii_uppercase + "_", min_size=1, max_size=8)
_values = st.text(
    alphabet=st.characters(blacklist_characters="\\\x00", blacklist_categories=("Cs",)),
    max_size=20,
).filter(lambda v: "]]>" not in v and v == v.strip())


@given(
    st.lists(
        st.tuples(_names, st.one_of(_values, st.dictionaries(_names, _values, max_size=3))),
        max_size=6,
    )
)
def test_text_round_trip(items: list[tuple[str, object]]) -> None:
    """to_str() parses back to the same template (a round-trip law)."""
    tmpl = Template([(n, v) for n, v in items])  # type: ignore[misc]
    assert parse_text(tmpl.to_str()).items == tmpl.items


# Every error oned's template grammar can report, with bison's wording (token names,
# expected tokens in token order) and the location: line counted from 0, columns in
# bytes over the whole text from 1, of the last lexeme read.
BISON_ERRORS = [
    # state after VARIABLE: EQUAL or EQUAL_EMPTY
    ("A", "unexpected $end, expecting EQUAL or EQUAL_EMPTY at line 0, columns 1:2"),
    ("A B", "unexpected VARIABLE, expecting EQUAL or EQUAL_EMPTY at line 0, columns 3:4"),
    ("A ,", "unexpected COMMA, expecting EQUAL or EQUAL_EMPTY at line 0, columns 2:4"),
    ("A ]", "unexpected CBRACKET, expecting EQUAL or EQUAL_EMPTY at line 0, columns 2:4"),
    # comment without a final new line is not a comment: its words are VARIABLEs
    ("A=1 # c", "unexpected $end, expecting EQUAL or EQUAL_EMPTY at line 0, columns 7:8"),
    # state after EQUAL: OBRACKET, CCDATA or STRING
    ("A = ", "unexpected $end, expecting OBRACKET or CCDATA or STRING at line 0, columns 2:5"),
    # state after OBRACKET: CBRACKET or VARIABLE
    ("NAME = [", "unexpected $end, expecting CBRACKET or VARIABLE at line 0, columns 8:9"),
    ('BROKEN = [ "', "unexpected $end, expecting CBRACKET or VARIABLE at line 0, columns 12:13"),
    ("V=[,]", "unexpected COMMA, expecting CBRACKET or VARIABLE at line 0, columns 4:5"),
    # state after a vector key: EQUAL
    ("A=[B]", "unexpected CBRACKET, expecting EQUAL at line 0, columns 5:6"),
    ("V=[A=\n]", "unexpected EQUAL_EMPTY, expecting EQUAL at line 1, columns 5:7"),
    # state after a vector EQUAL: STRING
    ("A=[B=[", "unexpected OBRACKET, expecting STRING at line 0, columns 6:7"),
    ('V=[A="x]]>"]', None),
    # state after a vector value: COMMA or CBRACKET
    ("A = [B=1", "unexpected $end, expecting COMMA or CBRACKET at line 0, columns 8:9"),
    (
        'CPU="1"\nMEMORY="64"\nDISK=[IMAGE_ID="0"',
        "unexpected $end, expecting COMMA or CBRACKET at line 2, columns 36:39",
    ),
    # state after COMMA: VARIABLE
    ("V=[A=1,]", "unexpected CBRACKET, expecting VARIABLE at line 0, columns 8:9"),
    ("V=[A=1,B]", "unexpected CBRACKET, expecting EQUAL at line 0, columns 9:10"),
    # after whole attributes (and at the start): only $end
    ("= 3", "unexpected EQUAL, expecting $end at line 0, columns 1:3"),
    ("A=[B=1]]", "unexpected CBRACKET, expecting $end at line 0, columns 8:9"),
    ("A=b,", "unexpected COMMA, expecting $end at line 0, columns 4:5"),
    ("\u00e9=1", "unexpected EQUAL, expecting $end at line 0, columns 3:4"),
    # CCDATA (a value with ]]>) aborts without a message
    ('A = "x]]>y"', None),
]


class BisonErrorTests(SynchronousTestCase):
    def test_every_error_kind(self) -> None:
        """Each row: the template and oned's message after "Parse error: "."""
        for text, detail in BISON_ERRORS:
            with self.assertRaises(TemplateSyntaxError, msg=text) as caught:
                parse_text(text)
            if detail is None:
                self.assertEqual(caught.exception.parse_error, "Parse error.", text)
            else:
                self.assertEqual(
                    caught.exception.parse_error, f"Parse error: syntax error, {detail}", text
                )

    def test_scanner_quirks_accepted(self) -> None:
        """What oned's scanner accepts: skipped bytes, the longest match, CRLF."""
        cases = [
            ("A==b", [("A", "b")]),
            ("A=#x", [("A", "x")]),
            ('A="x"y', [("A", '"x"y')]),
            ('A="a\\" b"', [("A", 'a" b')]),
            ('A=1\r\nB="2"\r\n', [("A", "1"), ("B", '"2"')]),
            ("A=\nB=2", [("A", ""), ("B", "2")]),
            ("A=1 # c\nB=2", [("A", "1"), ("B", "2")]),
            ("V = [ a = 1 ,\n b = 2 ]", [("V", {"A": "1", "B": "2"})]),
        ]
        for text, items in cases:
            self.assertEqual(parse_text(text).items, items, text)
