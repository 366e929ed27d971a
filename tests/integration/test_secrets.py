"""Secrets through the real CLI: short ones, filtered ones, and what must not be masked."""

from __future__ import annotations

import json
from pathlib import Path

from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret

from maintainer.redact import MASK
from tests.helpers import cli, local_site, make_project, read_log

RUNBOOK = """
name: sec
version: 1.0.0
params:
  pw: {type: secret}
steps:
  - id: say
    uses: shell
    with:
      command: "echo table {{ params.pw | quote }} {{ site.short_v | quote }}; echo q={{ params.pw | quote }}"
  - id: show
    uses: debug
    with:
      msg: "quoted={{ params.pw | quote }} json={{ params | to_json }} b64={{ params.pw | b64encode }}"
"""
PLAIN = """
name: plain
version: 1.0.0
steps:
  - id: say
    uses: shell
    with:
      command: "echo theme={{ site.compass_theme }} ttl={{ site.token_ttl }} pool={{ site.passenger_max_pool_size }}"
"""
VAULT_PASSWORD = "fixture-vault-pass"


def _vaulted(value: str) -> str:
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(VAULT_PASSWORD.encode()))])
    ciphertext = vault.encrypt(value).decode()
    return "!vault |\n" + "".join(f"  {line}\n" for line in ciphertext.splitlines())


def _project(tmp_path: Path, **extra: object) -> Path:
    runbooks = {"sec@1.0.0": RUNBOOK, "plain@1.0.0": PLAIN}
    project = make_project(tmp_path, runbooks, {"web1": local_site(tmp_path, **extra)})
    host_vars = project / "inventories" / "host_vars"
    host_vars.mkdir()
    (host_vars / "web1.yml").write_text("short_v: " + _vaulted("ab"))
    (tmp_path / "vault-pass.txt").write_text(VAULT_PASSWORD + "\n")
    return project


def _run(project: Path, *args: str, runbook: str = "sec") -> str:
    vault = ("--vault-password-file", str(project / "vault-pass.txt"))
    result = cli(project, "run", runbook, *vault, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_short_secret_param_and_vault_value_are_masked_everywhere(tmp_path: Path) -> None:
    project = _project(tmp_path)
    shown = _run(project, "-v", "-p", "pw=x9z")
    (entry,) = read_log(project)
    assert entry["params"] == {"pw": MASK}
    logged = (project / "changelog.jsonl").read_text()
    assert "x9z" not in shown + logged
    # free text: whole tokens only, so "table" survives a secret "ab"
    assert f"table {MASK} {MASK}" in shown and '"ab"' not in shown + logged

    plan = _run(project, "--dry-run", "-p", "pw=x9z")
    assert f"params: pw={MASK}" in plan and "x9z" not in plan

    listed = cli(project, "inventory", "list", "--vault-password-file", str(project / "vault-pass.txt"))
    assert listed.returncode == 0, listed.stderr
    assert f'short_v: "{MASK}"' in listed.stdout and '"ab"' not in listed.stdout


def test_quoted_json_and_base64_forms_of_a_secret_are_masked(tmp_path: Path) -> None:
    project = _project(tmp_path)
    secret = "hun'ter 22"
    for args in (("--dry-run",), ("-v",)):
        shown = _run(project, *args, "-p", f"pw={secret}")
        for leak in ("hun", "ter 22", "aHVuJ3RlciAyMg=="):
            assert leak not in shown, (args, leak)
    assert f"q={MASK}" in shown and f"quoted={MASK}" in shown
    logged = (project / "changelog.jsonl").read_text()
    assert "hun" not in logged and "ter 22" not in logged


def test_vars_that_only_contain_a_secret_word_are_not_masked(tmp_path: Path) -> None:
    project = _project(
        tmp_path, compass_theme="default", token_ttl=3600, passenger_max_pool_size=6, db_password="s3cr3t-pw"
    )
    vault = ("--vault-password-file", str(project / "vault-pass.txt"))
    listed = json.loads(cli(project, "inventory", "list", "-o", "json", *vault).stdout)
    site_vars = listed["sites"]["web1"]["vars"]
    assert site_vars["compass_theme"] == "default"
    assert site_vars["token_ttl"] == 3600
    assert site_vars["passenger_max_pool_size"] == 6
    assert site_vars["db_password"] == MASK and site_vars["short_v"] == MASK
    # their values were secrets, so masked in every string: 'default', '3600' and '6' now stay readable
    shown = _run(project, "-v", runbook="plain")
    assert "theme=default ttl=3600 pool=6" in shown


def test_a_short_secret_never_masks_the_logs_own_fields(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "short@1.0.0": "name: short\nversion: 1.0.0\nparams:\n  pin: {type: secret}\nsteps:\n"
            "  - {id: ok, uses: shell, with: {command: 'echo {{ params.pin }}'}}\n"
        },
        {"web1": local_site(tmp_path)},
    )
    result = cli(project, "run", "short", "-p", "pin=ok")
    assert result.returncode == 0, result.stderr
    site = read_log(project)[-1]["sites"]["web1"]
    assert site["status"] == "ok" and site["steps"][0]["id"] == "ok" and site["steps"][0]["status"] == "ok"


def test_a_playbook_gets_the_vault_password_given_only_in_the_environment(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "play@1.0.0": "name: play\nversion: 1.0.0\nsteps:\n  - {id: p, uses: playbook, with: {playbook: v.yml}}\n"
        },
        {"web1": local_site(tmp_path)},
    )
    host_vars = project / "inventories" / "host_vars"
    host_vars.mkdir()
    (host_vars / "web1.yml").write_text("db_secret_value: " + _vaulted("s3cr3t-from-vault"))
    (project / "playbooks" / "v.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.assert: {that: db_secret_value == 's3cr3t-from-vault'}\n"
    )
    result = cli(project, "run", "play", env={"MAINTAINER_VAULT_PASSWORD": VAULT_PASSWORD}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-from-vault" not in result.stdout + result.stderr
    assert not list(tmp_path.glob("**/vault-password")), "the password file outlived the step"
