"""one_market calls its remotes as OpenNebula's one_market.rb does, so OpenNebula's own
market remotes (remotes/http, one, s3) run under our driver and our dummy remotes run
under OpenNebula's driver: the datastore ``export`` gets the message on stdin and the
id as its argument; market ``import`` and ``monitor`` get ``<b64 message> <id>`` as
arguments and nothing on stdin (one_market.rb's do_action(..., encode, stdin) flags)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from .test_drivers_programs import ProgramCase, b64, fresh_path

RECORD = """#!/bin/sh
echo "ARGS=$*" > "{out}.$(basename $0)"
cat >> "{out}.$(basename $0)"
{reply}
"""
DUMMY = Path(__file__).resolve().parents[3] / "drivers" / "remotes" / "market" / "dummy"


class MarketRemotesArgs(ProgramCase):
    program = "one_market"

    def test_stdin_and_arguments_as_one_market_rb(self) -> None:
        root = Path(fresh_path(self))
        out = root / "rec"
        for family, name, reply in (
            ("datastore/rec", "export", "echo '<IMPORT_INFO><SIZE>5</SIZE></IMPORT_INFO>'"),
            ("market/rec", "import", "echo 'SOURCE=\"x\"'"),
            ("market/rec", "monitor", "echo 'TOTAL_MB=1'"),
        ):
            script = root / "var" / "remotes" / family / name
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(RECORD.format(out=out, reply=reply))
            script.chmod(0o755)
        app = b64(
            "<MARKET_DRIVER_ACTION_DATA><MARKETPLACEAPP><TYPE>1</TYPE><ORIGIN_ID>0"
            "</ORIGIN_ID></MARKETPLACEAPP><MARKETPLACE><MARKET_MAD>rec</MARKET_MAD>"
            "</MARKETPLACE><IMAGE><ID>0</ID></IMAGE><DATASTORE><DS_MAD>rec</DS_MAD>"
            "</DATASTORE></MARKET_DRIVER_ACTION_DATA>"
        )
        old = os.environ.get("ONE_LOCATION")
        os.environ["ONE_LOCATION"] = str(root)
        try:
            lines = self.run_lines(f"IMPORT  3 {app}", f"MONITOR  4 {app}", argv="-m rec")
        finally:
            if old is None:
                del os.environ["ONE_LOCATION"]
            else:
                os.environ["ONE_LOCATION"] = old
        replies = lines.splitlines()
        self.assertEqual(
            [r.split()[:3] for r in replies],
            [["IMPORT", "SUCCESS", "3"], ["MONITOR", "SUCCESS", "4"]],
        )
        export = Path(f"{out}.export").read_text().splitlines()
        self.assertEqual(export[0], "ARGS=3")
        sent = base64.b64decode(export[1]).decode()
        self.assertTrue(sent.startswith("<DS_DRIVER_ACTION_DATA><IMAGE>"), sent)
        args = Path(f"{out}.import").read_text().splitlines()
        self.assertEqual(len(args), 1)
        message, app_id = args[0].removeprefix("ARGS=").split()
        self.assertEqual(app_id, "3")
        self.assertIn("<SIZE>5</SIZE>", base64.b64decode(message).decode())
        self.assertEqual(Path(f"{out}.monitor").read_text(), f"ARGS={app} 4\n")


class DummyImportArgs(SynchronousTestCase):
    def test_both_conventions(self) -> None:
        """drivers/remotes/market/dummy/import: ``<b64> <id>`` (OpenNebula's one_market.rb)
        or ``<id>`` with the message on stdin."""
        msg = b64(
            "<MARKET_DRIVER_ACTION_DATA><SIZE>7</SIZE><MD5>abc</MD5></MARKET_DRIVER_ACTION_DATA>"
        )
        for argv, stdin in (([msg, "5"], ""), (["5"], msg)):
            done = subprocess.run(
                [str(DUMMY / "import"), *argv],
                input=stdin,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            self.assertEqual(
                done.stdout,
                'SOURCE="dummy://apps/5"\nMD5="abc"\nFORMAT="raw"\nSIZE="7"\n',
            )
