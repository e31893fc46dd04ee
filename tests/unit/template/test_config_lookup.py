"""oned.conf lookups (``OnedConfig.get``, ``Core.attr_list``) answer from a map that
follows every change of the template, exactly as scanning it would."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness


class ConfigLookupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.config = self.one.core.config

    def scan(self, setting: str) -> list[str]:
        return [
            v.strip().upper()
            for n, v in self.config.template.items
            if n == setting and isinstance(v, str) and v.strip()
        ]

    def test_same_answers_as_a_scan(self) -> None:
        tmpl = self.config.template
        for name in ("DEFAULT_DEVICE_PREFIX", "port", "VM_MAD", "NOPE", "MAC_PREFIX"):
            self.assertEqual(self.config.get(name), tmpl.get_last(name))
            self.assertEqual(self.config.get(name, "d"), tmpl.get_last(name, "d"))
        for setting in ("VM_RESTRICTED_ATTR", "VM_ENCRYPTED_ATTR", "vm_restricted_attr"):
            self.assertEqual(self.one.core.attr_list(setting), self.scan(setting))

    def test_follows_changes(self) -> None:
        tmpl = self.config.template
        self.assertIsNone(self.config.get("NEWX"))
        tmpl.add("NEWX", "1")
        tmpl.add("NEWX", "3")
        self.assertEqual(self.config.get("NEWX"), "3")
        tmpl.set("NEWX", "2")
        self.assertEqual(self.config.get("NEWX"), "2")
        tmpl.erase("NEWX")
        self.assertIsNone(self.config.get("NEWX"))
        tmpl.add("VM_ENCRYPTED_ATTR", " nic/secret ")
        self.assertIn("NIC/SECRET", self.one.core.attr_list("VM_ENCRYPTED_ATTR"))
