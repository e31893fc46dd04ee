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
        for bad in ("A", "A = [B=1", "= 3", 'A = "open', "A = x y", "A=[B]"):
            with self.assertRaises(TemplateSyntaxError, msg=bad):
                parse_text(bad)

    def test_cdata_terminator_rejected(self) -> None:
        """A value containing ]]> is refused."""
        with self.assertRaises(TemplateSyntaxError):
            parse_text('A = "x]]>y"')

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
