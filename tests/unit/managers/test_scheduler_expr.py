"""The requirement and rank languages (``expr_bool.y``/``expr_arith.y`` semantics)."""

from __future__ import annotations

import pytest

from oned.managers.scheduler.expr import (
    DS_PATHS,
    HOST_PATHS,
    ExprError,
    XmlObject,
    eval_bool,
    eval_rank,
    join_requirements,
)

HOST = (
    "<HOST><ID>3</ID><NAME>aquila01</NAME><STATE>2</STATE><CLUSTER_ID>100</CLUSTER_ID>"
    "<HOST_SHARE><MEM_USAGE>0</MEM_USAGE><CPU_USAGE>50</CPU_USAGE><MAX_MEM>2048</MAX_MEM>"
    "<MAX_CPU>400</MAX_CPU><RUNNING_VMS>2</RUNNING_VMS><DATASTORES><DS><ID>0</ID>"
    "<FREE_MB>100</FREE_MB></DS></DATASTORES></HOST_SHARE>"
    "<VMS><ID>5</ID><ID>7</ID></VMS>"
    "<TEMPLATE><HOSTNAME>aquila01</HOSTNAME><CPUSPEED>2.5</CPUSPEED><HYPERVISOR>kvm</HYPERVISOR>"
    "<PIN_POLICY>NONE</PIN_POLICY><EMPTY></EMPTY></TEMPLATE>"
    "<MONITORING><CAPACITY><FREE_CPU>350</FREE_CPU><FREE_MEMORY>1024</FREE_MEMORY></CAPACITY>"
    "</MONITORING><CLUSTER_TEMPLATE><ZONE>eu</ZONE></CLUSTER_TEMPLATE></HOST>"
)
DS = (
    "<DATASTORE><ID>100</ID><NAME>sys</NAME><CLUSTERS><ID>0</ID><ID>101</ID></CLUSTERS>"
    "<TM_MAD>ssh</TM_MAD><FREE_MB>500</FREE_MB><TEMPLATE><SHARED>NO</SHARED></TEMPLATE>"
    "</DATASTORE>"
)


@pytest.fixture
def host() -> XmlObject:
    return XmlObject.parse(HOST, HOST_PATHS)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("", True),
        ("CPU_USAGE > 1 & MAX_MEM > 100", True),
        ("MAX_CPU < 400", False),
        ("MAX_CPU = 400", True),
        ("MAX_CPU != 400", False),
        ("!(MAX_CPU > 500)", True),
        ("! MAX_CPU > 500", True),
        ("RUNNING_VMS = 2 | NOPE = 1", True),
        ("NOPE != 5", False),  # missing attribute: every comparison is false
        ('NOPE = "*"', False),
        ('HOSTNAME = "aquila*"', True),
        ('HOSTNAME = "aquila0?"', True),
        ('HOSTNAME != "aquila*"', False),
        ('HOSTNAME = "host*"', False),
        ("HYPERVISOR = kvm", True),  # an unquoted right side is a string too
        ('HOSTNAME = ""', False),  # "" is the null string
        ("CLUSTER_ID = 100", True),
        ("CLUSTER_ID = 101", False),
        ("NAME = aquila01", True),  # /HOST/NAME through the search paths
        ("FREE_CPU > 300", True),  # /HOST/MONITORING/CAPACITY/
        ('ZONE = "eu"', True),  # /HOST/CLUSTER_TEMPLATE/
        ("CPUSPEED > 2.4", True),
        ("CPUSPEED = 2.5", True),
        ("CPUSPEED > 2", False),  # an integer literal reads "2.5" as 2
        ('"HOST_SHARE/MAX_CPU" = 400', True),  # a quoted relative path
        ('"/HOST/VMS/ID" @> 7', True),  # absolute paths are quoted
        ('"/HOST/VMS/ID" @> 8', False),
        ("CURRENT_VMS = 5", True),
        ("CURRENT_VMS != 5", False),
        ("CURRENT_VMS != 6", True),
        ("ID = 3 & ! RUNNING_VMS > 1", False),  # ! binds the next comparison only
        ("ID = 4 | ID = 3 & RUNNING_VMS = 0", False),  # left to right, no precedence
        ("(ID = 4 | ID = 3) & (RUNNING_VMS = 2)", True),
        ("!(PIN_POLICY = PINNED)", True),
    ],
)
def test_requirements(host: XmlObject, expr: str, expected: bool) -> None:
    assert eval_bool(expr, host) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("", 0),
        ("FREE_CPU", 350),
        ("- RUNNING_VMS", -2),
        ("RUNNING_VMS", 2),
        ("RUNNING_VMS * 2 + 1", 5),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("MAX_CPU / 4 - FREE_CPU", -250),
        ("NOPE + 1", 1),  # missing attributes are 0
        ("CPUSPEED * 2", 5),
        ("FREE_CPU / 0", 0),
    ],
)
def test_ranks(host: XmlObject, expr: str, expected: float) -> None:
    assert int(eval_rank(expr, host)) == expected


@pytest.mark.parametrize("expr", ["CPU >", "CPU >= 1", "1 = CPU", "(CPU = 1", "CPU = 1 &", "$X"])
def test_syntax_errors(host: XmlObject, expr: str) -> None:
    with pytest.raises(ExprError):
        eval_bool(expr, host)


def test_datastore_paths_and_multivalued_clusters() -> None:
    ds = XmlObject.parse(DS, DS_PATHS)
    assert eval_bool('"CLUSTERS/ID" @> 101', ds)
    assert not eval_bool('"CLUSTERS/ID" @> 102', ds)
    assert eval_bool('TM_MAD = "ssh" & SHARED = "NO"', ds)
    assert eval_rank("FREE_MB", ds) == 500


def test_join_requirements() -> None:
    assert join_requirements("", "") == ""
    assert join_requirements("A = 1", "") == "A = 1"
    assert join_requirements("", "B = 2") == "B = 2"
    assert join_requirements("A = 1", "B = 2 | C = 3") == "A = 1 & ( B = 2 | C = 3 )"
