"""The composition root builds the right named service tree (nothing is started)."""

import subprocess
import sys
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from ctid import config
from ctid.interfaces import IPBX
from ctid.service import makeService

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [str(Path(sys.executable).parent / "twistd")]


def names(service):
    return [child.name for child in service]


def test_embedded_defaults_tree():
    """The embedded defaults run the simulator, the AMI link, the adapter, the database, CTI, FastAGI and reload."""
    root = makeService(config.load(str(ROOT / "conf" / "ctid.ini")), MemoryReactorClock())
    assert names(root) == ["pbxsim", "ami", "pbx", "db", "schema", "center", "records", "reports", "cti", "corebank",
                           "ivr", "fastagi", "reload"]
    verifyObject(IPBX, root.getServiceNamed("pbx"))


def test_optional_parts(tmp_path):
    """The JSON log and the manhole appear when configured; the simulator only when enabled."""
    text = (
        "[ami]\nsecret = s3cret\n"
        f"[ctid]\nlog_file = {tmp_path / 'ctid.jsonl'}\n"
        "[manhole]\nenabled = yes\npassword = long-enough\n"
    )
    path = tmp_path / "ctid.ini"
    path.write_text(text)
    root = makeService(config.load(str(path)), MemoryReactorClock())
    assert names(root) == ["jsonlog", "ami", "pbx", "db", "schema", "center", "records", "cti", "fastagi", "manhole",
                           "reload"]


def test_twistd_lists_the_plugin_options():
    """`twistd ctid --help` shows the --config option."""
    out = subprocess.run(TWISTD + ["ctid", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout


def test_twistd_bad_config_is_one_clear_line(tmp_path):
    """A bad setting stops start-up with one line naming file, section and key, and no traceback."""
    path = tmp_path / "bad.ini"
    path.write_text("[ami]\nsecret = x\nping_timeout = never\n")
    out = subprocess.run(
        TWISTD + ["--pidfile=", "-n", "ctid", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert f"{path}: [ami] ping_timeout:" in out.stderr
    assert "Traceback" not in out.stderr
