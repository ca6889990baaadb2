"""Path arguments against roots (mcpwall.checks.paths)."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpwall.checks.paths import PathRejected, check_path, decodings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "docs").mkdir(parents=True)
    (base / "docs" / "a.txt").write_text("a")
    (tmp_path / "secret.txt").write_text("s")
    (base / "escape").symlink_to(tmp_path)
    (base / "inside").symlink_to(base / "docs")
    return base


@pytest.mark.parametrize("value", ["docs/a.txt", "docs", "new/file.txt", "./docs/a.txt", "inside/a.txt",
                                   "file name with spaces.txt", "%20spaced.txt", "caf\u00e9.txt"])
def test_paths_inside_the_root_pass(root: Path, value: str) -> None:
    check_path(value, [str(root)])


def test_absolute_paths_inside_the_root_pass(root: Path) -> None:
    check_path(str(root / "docs" / "a.txt"), [str(root)])
    check_path(f"file://{root}/docs/a.txt", [str(root)])


@pytest.mark.parametrize(("value", "code"), [
    ("../secret.txt", "traversal"),
    ("docs/../../secret.txt", "traversal"),
    ("..", "traversal"),
    ("docs\\..\\..\\secret.txt", "traversal"),
    ("%2e%2e/secret.txt", "encoded_traversal"),
    ("%2E%2E%2Fsecret.txt", "encoded_traversal"),
    ("..%2fsecret.txt", "encoded_traversal"),
    ("%252e%252e%252fsecret.txt", "encoded_traversal"),
    ("%25252e%25252e/secret.txt", "encoded_traversal"),
    ("\uff0e\uff0e\uff0fsecret.txt", "encoded_traversal"),  # full-width, folded by NFKC
    ("docs/a.txt\x00.png", "control"),
    ("docs/%00a.txt", "control"),
    ("docs/a\nb", "control"),
    ("~/.ssh/id_rsa", "home"),
    ("~root/.ssh", "home"),
    ("/etc/passwd", "outside_roots"),
    ("file:///etc/passwd", "outside_roots"),
    ("file://evil.example/share", "outside_roots"),
    ("C:\\Windows\\win.ini", "outside_roots"),
    ("\\\\server\\share\\x", "outside_roots"),
    ("escape/secret.txt", "symlink_escape"),
    ("%c0%ae%c0%ae/secret.txt", "encoding"),
    ("%2525252525252e", "encoding"),
])
def test_escapes_are_refused(root: Path, value: str, code: str) -> None:
    with pytest.raises(PathRejected) as caught:
        check_path(value, [str(root)])
    assert caught.value.code == code


def test_absolute_path_through_a_symlink_is_refused(root: Path) -> None:
    with pytest.raises(PathRejected) as caught:
        check_path(str(root / "escape" / "secret.txt"), [str(root)])
    assert caught.value.code == "symlink_escape"


def test_symlinks_are_not_followed_when_disabled(root: Path) -> None:
    check_path("escape/secret.txt", [str(root)], resolve_symlinks=False)


def test_a_path_inside_a_second_root_passes(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    check_path(str(other / "x"), [str(root), str(other)])


def test_a_root_that_is_a_prefix_of_a_sibling_does_not_admit_the_sibling(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data-private").mkdir()
    with pytest.raises(PathRejected):
        check_path(str(tmp_path / "data-private" / "x"), [str(tmp_path / "data")])


def test_without_roots_only_syntax_is_checked() -> None:
    check_path("/etc/hosts", [])
    with pytest.raises(PathRejected):
        check_path("../x", [])


def test_decodings_include_each_layer() -> None:
    assert decodings("%252e") == ["%252e", "%2e", "."]


# -- properties ----------------------------------------------------------------------------------

segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"),
                  min_size=1, max_size=8)


@given(st.lists(segment, min_size=1, max_size=6), st.integers(0, 3))
def test_no_encoding_of_a_path_escapes_the_root(parts: list[str], rounds: int) -> None:
    root = "/srv/root"
    value = "/".join(parts)
    for _ in range(rounds):
        value = quote(value, safe="")
    try:
        check_path(value, [root], resolve_symlinks=False)
    except PathRejected:
        return
    # Accepted: every decoding must stay under the root once normalised.
    for form in decodings(value):
        posix = form.replace("\\", "/")
        target = posixpath.normpath(posix if posix.startswith("/") else posixpath.join(root, posix))
        assert target == root or target.startswith(root + "/")


@given(st.text(max_size=60))
def test_check_path_raises_only_path_rejected(value: str) -> None:
    try:
        check_path(value, ["/srv/root"], resolve_symlinks=False)
    except PathRejected as exc:
        assert exc.code
    assert os.sep == "/"
