"""OpenNebula template language: attribute multimap, text/XML parsers, rendering."""

from oned.template.parser import TemplateSyntaxError, parse_str_or_xml, parse_text
from oned.template.template import Template, cdata, xml_escape

__all__ = [
    "Template",
    "TemplateSyntaxError",
    "cdata",
    "parse_str_or_xml",
    "parse_text",
    "xml_escape",
]
