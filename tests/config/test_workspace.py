"""The workspace path is checked where it is resolved; folders are created on demand with clear errors."""

from __future__ import annotations

import os

import pytest

from jupyter_avml.workspace import Workspace, WorkspaceError


def test_resolution_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("AVML_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Workspace.resolve().root == tmp_path / "avml-workspace"
    assert Workspace.resolve(tmp_path / "a" / "b" / "c").root == tmp_path / "a" / "b" / "c"
    assert list(tmp_path.iterdir()) == []


def test_the_message_says_where_the_path_came_from(tmp_path, monkeypatch):
    (tmp_path / "avml-workspace").write_text("x")
    monkeypatch.delenv("AVML_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError, match=r"^default workspace .*avml-workspace: is a file"):
        Workspace.resolve()
    with pytest.raises(WorkspaceError, match=r"^workspace .*avml-workspace: is a file") as info:
        Workspace.resolve("avml-workspace")
    assert info.value.field == "workspace"


def test_ensure_names_the_folder_it_cannot_create(tmp_path):
    ws = Workspace.resolve(tmp_path / "ws")
    assert ws.ensure("runs", "r1") == tmp_path / "ws" / "runs" / "r1"
    (tmp_path / "ws" / "cache").write_text("a file where a folder belongs")
    with pytest.raises(WorkspaceError, match=r"cannot create .*ws/cache/images: (File exists|Not a directory)"):
        ws.ensure("cache", "images")


def test_permission_check_uses_the_nearest_existing_folder(tmp_path, monkeypatch):
    calls = []

    def access(path, mode):
        calls.append(str(path))
        return False

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(WorkspaceError, match=r"is not writable \(.*, where it would be created\): permission denied"):
        Workspace.resolve(tmp_path / "new" / "deeper")
    assert calls == [str(tmp_path)]
