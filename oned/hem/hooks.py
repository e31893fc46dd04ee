"""Hooks as the HEM sees them (onehem-server's ``HEMHook`` and ``HookMap``).

A hook comes from ``one.hookpool.info``/``one.hook.info``; its *key* is the CALL of an
API hook or ``RESOURCE/STATE/LCM_STATE`` of a state hook, and its bus *filter* is
``EVENT API <call> `` or ``EVENT STATE <key>``. Events are looked up by key, so a
filter that also matches a longer name (ZeroMQ subscriptions are prefixes) never runs a
hook it should not.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field

from lxml import etree

HOOK_TYPES = ("api", "state")

#: API calls after which onehem-server reloads a hook (``UPDATE_CALLS``).
UPDATE_CALLS = ("one.hook.update", "one.hook.allocate", "one.hook.delete")
#: Filters subscribed whatever the hooks are (``STATIC_FILTERS`` and ``RETRY``).
STATIC_FILTERS = (*(f"EVENT API {call} 1" for call in UPDATE_CALLS), "RETRY")

_PARSER = etree.XMLParser(
    recover=True,
    strip_cdata=False,
    resolve_entities=False,
    no_network=True,
    huge_tree=True,
)


def parse_xml(data: bytes | str) -> etree._Element | None:
    """Parse a document leniently (as Nokogiri does: oned streams API parameters into
    HOOK_MESSAGE without escaping them); None when nothing can be read."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw.strip():
        return None
    try:
        return etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError:
        return None


def first(doc: etree._Element, tag: str) -> etree._Element | None:
    """The first ``//tag`` in document order."""
    if doc.tag == tag:
        return doc
    return next(doc.iter(tag), None)


def first_text(doc: etree._Element, tag: str) -> str | None:
    node = first(doc, tag)
    return None if node is None else (node.text or "")


def lenient_b64decode(text: str | bytes) -> bytes:
    """Ruby's ``Base64.decode64``: characters outside the alphabet are skipped and a
    truncated tail is ignored rather than refused."""
    raw = text.encode("ascii", "ignore") if isinstance(text, str) else text
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    clean = bytes(c for c in raw.split(b"=", 1)[0] if c in alphabet)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    try:
        return base64.b64decode(clean + b"=" * (-len(clean) % 4))
    except (binascii.Error, ValueError):
        return b""


def strict_b64(data: bytes | str) -> str:
    """Ruby's ``Base64.strict_encode64``."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def serialize(node: etree._Element | None) -> str:
    """``node.to_s`` as Nokogiri writes an element (libxml2's formatted output); a missing
    node is the empty string (``nil.to_s``)."""
    if node is None:
        return ""
    text = etree.tostring(node, encoding="unicode", pretty_print=True, with_tail=False)
    return text[:-1] if text.endswith("\n") else text


@dataclass(frozen=True)
class Hook:
    """One hook: its id, name, TYPE and TEMPLATE attributes (single values)."""

    id: int
    name: str
    type: str
    template: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_xml(cls, node: etree._Element) -> Hook:
        template: dict[str, str] = {}
        tmpl = node.find("TEMPLATE")
        if tmpl is not None:
            for child in tmpl:
                if isinstance(child.tag, str) and len(child) == 0 and child.tag not in template:
                    template[child.tag] = child.text or ""
        try:
            hook_id = int((node.findtext("ID") or "").strip())
        except ValueError:
            hook_id = -1
        return cls(
            id=hook_id,
            name=node.findtext("NAME") or "",
            type=node.findtext("TYPE") or "",
            template=template,
        )

    @property
    def valid(self) -> bool:
        return self.type in HOOK_TYPES and self.id >= 0

    @property
    def key(self) -> str:
        if self.type == "api":
            return self.template.get("CALL", "")
        if self.type == "state":
            t = self.template
            return f"{t.get('RESOURCE', '')}/{t.get('STATE', '')}/{t.get('LCM_STATE', '')}"
        return ""

    @property
    def filter(self) -> str:
        """The bus subscription; API filters end with a space so that one call's filter
        is not a prefix of another's (``one.vm.attach`` / ``one.vm.attachnic``)."""
        if self.type == "api":
            return f"EVENT API {self.key} "
        if self.type == "state":
            return f"EVENT STATE {self.key}"
        return ""

    @property
    def remote(self) -> bool:
        return self.template.get("REMOTE", "").lower() == "yes"

    @property
    def as_stdin(self) -> bool:
        # astdin.casecmp('yes') || ... : only "yes" (any case) passes the arguments on stdin
        return self.template.get("ARGUMENTS_STDIN", "").lower() == "yes"

    @property
    def timeout(self) -> int | None:
        value = self.template.get("TIMEOUT")
        if value is None:
            return None
        return _ruby_to_i(value)

    @property
    def command(self) -> str | None:
        return self.template.get("COMMAND")

    def arguments(self, event: etree._Element) -> str:
        """``HEMHook#arguments``: ARGUMENTS split on blanks, ``$API`` replaced by the base64
        CALL_INFO element and ``$TEMPLATE`` by the base64 object document."""
        hook_args = self.template.get("ARGUMENTS")
        if hook_args is None:
            return ""
        event_type = first_text(event, "HOOK_TYPE")
        if event_type is None:
            return ""
        api = template = ""
        if event_type.upper() == "API":
            api = strict_b64(serialize(first(event, "CALL_INFO")))
        elif event_type.upper() == "STATE":
            obj = first_text(event, "HOOK_OBJECT")
            if obj is None:
                return ""
            obj = obj.upper()
            obj = "VNET" if obj == "NET" else obj  # the network's root element is VNET
            template = strict_b64(serialize(first(event, obj)))
        out = ""
        for arg in hook_args.split():
            if arg == "$API":
                out += api + " "
            elif arg == "$TEMPLATE":
                out += template + " "
            else:
                out += arg + " "
        return out.strip()

    @staticmethod
    def remote_host(event: etree._Element) -> str:
        event_type = first_text(event, "HOOK_TYPE")
        if event_type is None or event_type.upper() == "API":
            return ""
        return first_text(event, "REMOTE_HOST") or ""


def _ruby_to_i(text: str) -> int:
    digits = ""
    for i, ch in enumerate(text.strip()):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def parse_pool(xml: str) -> list[Hook]:
    doc = parse_xml(xml)
    if doc is None:
        return []
    nodes = [doc] if doc.tag == "HOOK" else doc.findall("HOOK")
    return [Hook.from_xml(node) for node in nodes]


class HookMap:
    """Hooks by id and by (type, key), and the bus filters they need (counted, so a filter
    shared by two hooks stays subscribed until both are gone)."""

    def __init__(self) -> None:
        self._by_id: dict[int, Hook] = {}
        self._by_key: dict[tuple[str, str], list[int]] = {}
        self.filters: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, hook_id: object) -> bool:
        return hook_id in self._by_id

    def get(self, hook_id: int) -> Hook | None:
        return self._by_id.get(hook_id)

    def hooks_for(self, hook_type: str, key: str) -> list[Hook]:
        ids = self._by_key.get((hook_type.lower(), key), [])
        return [self._by_id[i] for i in ids if i in self._by_id]

    def add(self, hook: Hook) -> None:
        if hook.id in self._by_id:
            self.delete(hook.id)
        self._by_id[hook.id] = hook
        self._by_key.setdefault((hook.type, hook.key), []).append(hook.id)
        self.filters[hook.filter] += 1

    def delete(self, hook_id: int) -> Hook | None:
        hook = self._by_id.pop(hook_id, None)
        if hook is None:
            return None
        ids = self._by_key.get((hook.type, hook.key), [])
        if hook_id in ids:
            ids.remove(hook_id)
        if not ids:
            self._by_key.pop((hook.type, hook.key), None)
        self.filters[hook.filter] -= 1
        if self.filters[hook.filter] <= 0:
            del self.filters[hook.filter]
        return hook

    def replace_all(self, hooks: list[Hook]) -> None:
        for hook_id in list(self._by_id):
            self.delete(hook_id)
        for hook in hooks:
            if hook.valid:
                self.add(hook)

    def subscriptions(self) -> set[str]:
        """Every filter the subscriber needs: the hooks' and the static ones."""
        return set(self.filters) | set(STATIC_FILTERS)


@dataclass(frozen=True)
class Event:
    """One bus message, classified as onehem-server's loop does."""

    action: str  # EVENT or RETRY
    type: str  # API or STATE (EVENT only)
    key: str  # call name, or RESOURCE/STATE/LCM_STATE without the object id
    result: str  # "1"/"0" for API events
    content: bytes


def parse_event(key: bytes, content: bytes) -> Event | None:
    words = key.decode("utf-8", "replace").split()
    if not words:
        return None
    action = words[0]
    if action == "RETRY":
        return Event("RETRY", "", "", "", content)
    if action != "EVENT" or len(words) < 3:
        return None
    event_type, event_key = words[1], words[2]
    result = words[3] if len(words) > 3 else ""
    if event_type.upper() == "STATE" and "/" in event_key:
        event_key = event_key.rsplit("/", 1)[0]  # drop the object id
    return Event("EVENT", event_type.upper(), event_key, result, content)
