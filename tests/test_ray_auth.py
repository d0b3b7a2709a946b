"""One Ray authentication mode per process (``execution/ray_auth.py``): the cause of the Ray Train test that failed
after an in-process Tune search, and the refusal that now names it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from eaglesearch.execution import ray_auth


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_auth, "_first_mode", None)
    monkeypatch.delenv(ray_auth.AUTH_MODE_ENV, raising=False)


def test_a_later_init_under_another_mode_is_refused_naming_the_mode_to_set(fresh, monkeypatch) -> None:
    ray_auth.check_unchanged()  # nothing ran yet: any mode
    monkeypatch.setenv(ray_auth.AUTH_MODE_ENV, "token")  # what a local ray.init with the mode unset leaves
    ray_auth.remember()
    ray_auth.check_unchanged()  # the same mode
    monkeypatch.setenv(ray_auth.AUTH_MODE_ENV, "TOKEN")
    ray_auth.check_unchanged()  # Ray reads it case-insensitively
    monkeypatch.delenv(ray_auth.AUTH_MODE_ENV)
    ray_auth.check_unchanged()  # unset: Ray decides as it did the first time
    monkeypatch.setenv(ray_auth.AUTH_MODE_ENV, "disabled")
    with pytest.raises(ray_auth.AuthModeChanged) as err:
        ray_auth.check_unchanged()
    assert "RAY_AUTH_MODE=disabled" in str(err.value) and "Set RAY_AUTH_MODE=token (or unset it)" in str(err.value)
    monkeypatch.setenv(ray_auth.AUTH_MODE_ENV, "token")
    ray_auth.remember()  # a later init never changes the recorded mode
    monkeypatch.setenv(ray_auth.AUTH_MODE_ENV, "disabled")
    with pytest.raises(ray_auth.AuthModeChanged):
        ray_auth.check_unchanged()


SCRIPT = textwrap.dedent("""\
    import os
    import ray
    from eaglesearch.execution import ray_auth
    from eaglesearch.execution.ray_runner import init_ray

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self):
            return "pong"

    init_ray(None, "sqlite:///unused.db")  # RAY_AUTH_MODE unset: Ray 2.60 switches this process to token mode
    first = os.environ.get("RAY_AUTH_MODE")
    print("first:", first, ray.get(Echo.remote().ping.remote(), timeout=120), flush=True)
    ray.shutdown()
    os.environ["RAY_AUTH_MODE"] = "disabled" if first == "token" else "token"
    try:
        init_ray(None, "sqlite:///unused.db")
    except ray_auth.AuthModeChanged:
        print("refused", flush=True)
    if ray.__version__.startswith("2.60."):  # the Ray this was found on: what the refusal saves the user from
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            print("unguarded:", ray.get(Echo.remote().ping.remote(), timeout=120), flush=True)
        except ray.exceptions.ActorDiedError as err:
            print("unguarded: actor died:", str(err).splitlines()[-1], flush=True)
        ray.shutdown()
    """)


@pytest.mark.slow
def test_ray_destroys_every_actor_after_the_mode_changes_in_a_process_and_init_ray_refuses_first(tmp_path) -> None:
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("first:") and line.endswith(" pong") for line in lines), proc.stdout + proc.stderr
    assert "refused" in lines, proc.stdout + proc.stderr
    # Ray 2.60's behaviour behind the guard (the version this was found on; CI may install a newer Ray, which
    # may have fixed it: then only the refusal above is checked).
    import ray

    if ray.__version__.startswith("2.60."):
        assert "first: token pong" in lines, proc.stdout  # unset became token for the whole process
        assert "unguarded: actor died: The actor never ran - it was cancelled before it started running." in lines, \
            proc.stdout
