"""pophealth's own warnings reach the command line as ``warning:`` lines, once each.

A disclosure audit's "withheld cell(s) ... could still be derived" printed as Python's
warning, ``/path/pophealth/equity.py:343: UserWarning: ...`` and then a line of source code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import pophealth
from pophealth.commands._common import warning_lines

OURS = str(Path(pophealth.__file__).parent / "equity.py")


def test_our_warnings_are_warning_lines_once_each_and_others_pass_through(capsys):
    with pytest.warns(UserWarning, match="a library's own") as others, warning_lines():
        for _ in range(2):
            warnings.warn_explicit("disclosure: cells could be derived", UserWarning, OURS, 343)
        warnings.warn_explicit("disclosure: another", UserWarning, OURS, 344)
        warnings.warn_explicit("a library's own", UserWarning, "/elsewhere/lib.py", 7)
    err = capsys.readouterr().err
    assert err.count("warning: disclosure: cells could be derived") == 1
    assert "warning: disclosure: another" in err
    assert "UserWarning: disclosure" not in err and "equity.py" not in err
    assert [w.filename for w in others] == ["/elsewhere/lib.py"]
