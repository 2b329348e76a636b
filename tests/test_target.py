"""Serve targets: every form finds its service; every mistake says what, why and how to fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dosirak.target import ServeTargetError, load_service, parse_target

SERVICE = '''
import dosirak
from dosirak.io import JSON

svc = dosirak.Service("{name}")


@svc.api(input=JSON(), output=JSON())
def echo(body):
    return body
'''


@pytest.fixture(autouse=True)
def clean_modules(tmp_path: Path):
    """Each test imports its own files under fresh module names (the libraries a first test
    imports stay: numpy, for one, cannot be imported twice in a process)."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if origin.startswith(str(tmp_path)):
            del sys.modules[name]
    sys.path[:] = path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_file_with_attribute(tmp_path: Path) -> None:
    write(tmp_path / "app" / "svc_file.py", SERVICE.format(name="by_file"))
    svc = load_service(parse_target("app/svc_file.py:svc", cwd=tmp_path))
    assert svc.name == "by_file"


def test_module_with_attribute_and_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    write(tmp_path / "svc_module.py", SERVICE.format(name="by_module"))
    monkeypatch.chdir(tmp_path)
    assert load_service("svc_module:svc").name == "by_module"
    assert load_service("svc_module").name == "by_module"  # the one Service it defines


def test_directory_with_service_py_and_with_bentofile(tmp_path: Path) -> None:
    write(tmp_path / "plain" / "service.py", SERVICE.format(name="plain_dir"))
    assert load_service(parse_target("plain", cwd=tmp_path)).name == "plain_dir"
    write(tmp_path / "built" / "api_code.py", SERVICE.format(name="bentofile_dir"))
    write(tmp_path / "built" / "bentofile.yaml", "service: api_code:svc\n")
    assert load_service(parse_target("built", cwd=tmp_path)).name == "bentofile_dir"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ServeTargetError, match=r"the file .*nowhere\.py does not exist"):
        parse_target("nowhere.py:svc", cwd=tmp_path)
    with pytest.raises(ServeTargetError, match=r"neither service\.py nor a bentofile\.yaml"):
        (tmp_path / "empty").mkdir()
        parse_target("empty", cwd=tmp_path)


def test_missing_module_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ServeTargetError, match=r"no module named 'not_there'.*run dosirak serve "
                                               r"from the directory"):
        load_service("not_there:svc")


def test_wrong_attribute_suggests_the_service_it_has(tmp_path: Path) -> None:
    write(tmp_path / "named.py", SERVICE.format(name="named"))
    with pytest.raises(ServeTargetError, match=r"has no attribute 'service'.*serve named:svc"):
        load_service(parse_target("named.py:service", cwd=tmp_path))


def test_attribute_that_is_not_a_service(tmp_path: Path) -> None:
    write(tmp_path / "notsvc.py", SERVICE.format(name="x") + "\nnumber = 3\n")
    with pytest.raises(ServeTargetError, match=r"'number' is a int, not a dosirak\.Service"):
        load_service(parse_target("notsvc.py:number", cwd=tmp_path))


def test_module_without_or_with_several_services(tmp_path: Path) -> None:
    write(tmp_path / "none_here.py", "x = 1\n")
    with pytest.raises(ServeTargetError, match=r"defines no dosirak\.Service"):
        load_service(parse_target("none_here.py", cwd=tmp_path))
    write(tmp_path / "two.py", SERVICE.format(name="one") + SERVICE.format(name="two")
          .replace("svc", "other"))
    with pytest.raises(ServeTargetError, match=r"several services \(svc, other\); name one"):
        load_service(parse_target("two.py", cwd=tmp_path))


def test_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    write(tmp_path / "broken.py", "import dosirak\n\ndef oops(:\n    pass\n")
    with pytest.raises(ServeTargetError, match=r"broken\.py, line 3 has a syntax error"):
        load_service(parse_target("broken.py:svc", cwd=tmp_path))


def test_error_in_the_users_code_points_at_their_line(tmp_path: Path) -> None:
    write(tmp_path / "raises.py", "import json\n\nvalue = json.loads('{')\n")
    with pytest.raises(ServeTargetError) as caught:
        load_service(parse_target("raises.py:svc", cwd=tmp_path))
    message = str(caught.value)
    assert "raised JSONDecodeError" in message
    assert "raises.py, line 3" in message
    assert "fix it and serve again" in message


def test_missing_model_keeps_the_stores_advice(tmp_path: Path) -> None:
    write(tmp_path / "needs_model.py",
          "import dosirak\nrunner = dosirak.sklearn.get('absent_clf:latest').to_runner()\n")
    with pytest.raises(ServeTargetError) as caught:
        load_service(parse_target("needs_model.py:svc", cwd=tmp_path))
    message = str(caught.value)
    assert "needs_model.py, line 2: ModelNotFound" in message
    assert "dosirak models list" in message


def test_bad_attribute_syntax(tmp_path: Path) -> None:
    with pytest.raises(ServeTargetError, match="must be the name of the service object"):
        parse_target("service.py:not-a-name", cwd=tmp_path)
    with pytest.raises(ServeTargetError, match="no serve target given"):
        parse_target("  ", cwd=tmp_path)
