"""Inventory loading over ansible-core's own parser: formats, precedence, vault, --limit, digest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from maintainer.errors import BadInput, ExitCode
from maintainer.inventory import Inventory, Site, load_inventory
from maintainer.redact import MASK, Redactor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventories"
PRODUCTION = FIXTURES / "production" / "hosts.yml"
STAGING = FIXTURES / "staging" / "hosts.ini"
INLINE_VAULT = FIXTURES / "inline-vault" / "hosts.yml"
BROKEN = FIXTURES / "broken" / "hosts.yml"
VAULT_PASS = FIXTURES / "vault-pass.txt"

# the plaintexts behind the fixtures' vault values
SHOP_DB_PASSWORD = "S3cret-shop-db-pw!"  # inline !vault in group_vars/shops.yml
BLOG_DB_PASSWORD = "Bl0g-db-pw-4711"  # in the encrypted group_vars/blogs/vault.yml
SMTP_SECRET = "smtp-relay-7f3a9"  # ditto, under a key that does not look secret
PAYMENT_TOKEN = "tok-9f8e7d6c5b4a"  # inline !vault in host_vars/shop-alpha.yml
INLINE_DB_PASSWORD = "Inline-db-pw-2718"

# ansible's bookkeeping vars that `inventory list` should not show
MAGIC_VARS = {
    "groups",
    "hostvars",
    "omit",
    "playbook_dir",
    "inventory_file",
    "inventory_dir",
    "inventory_hostname_short",
    "ansible_version",
    "ansible_facts",
    "ansible_playbook_python",
    "ansible_config_file",
}
VAULT_ENV = ("MAINTAINER_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_PASSWORD_FILE", "MAINTAINER_VAULT_PASSWORD")


@pytest.fixture(autouse=True)
def _no_ambient_vault_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VAULT_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def production() -> Inventory:
    return load_inventory([PRODUCTION], vault_password_file=VAULT_PASS)


def site(inventory: Inventory, name: str) -> Site:
    return next(s for s in inventory.sites if s.name == name)


def names(sites: list[Site]) -> list[str]:
    return [s.name for s in sites]


def assert_plain(value: object) -> None:
    """Only built-in types: no ansible tagged/lazy subclasses left."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain(item)
    else:
        assert type(value) in (str, int, float, bool, type(None)), type(value)


# --- formats -----------------------------------------------------------------


def test_yaml_inventory_sites_and_groups(production: Inventory) -> None:
    assert sorted(names(production.sites)) == [
        "blog-one",
        "blog-two",
        "demo-local",
        "shop-alpha",
        "shop-beta",
        "shop-gamma",
    ]
    alpha = site(production, "shop-alpha")
    assert alpha.groups == ["eu", "production", "shops"]  # parents included, 'all' left out
    assert alpha.connection == "ssh"
    assert (alpha.host, alpha.port, alpha.user) == ("10.0.0.11", 2222, "deploy")
    assert alpha.cms == "wordpress"
    assert alpha.url == "https://shop-alpha.example.test"
    local = site(production, "demo-local")
    assert local.connection == "local"
    assert (local.host, local.port) == ("demo-local", 22)
    assert production.sources == [PRODUCTION]


def test_ini_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = load_inventory([STAGING])
    assert names(inventory.sites) == ["shop-staging", "blog-staging"]
    shop = site(inventory, "shop-staging")
    assert shop.groups == ["shops", "staging"]
    assert (shop.host, shop.port, shop.user) == ("127.0.0.1", 2200, "stage")
    assert shop.url == "https://shop.staging.test"
    assert shop.cms == "drupal"  # host_vars/shop-staging.yml beats [staging:vars]
    assert shop.vars["docroot"] == "/srv/staging/shop"
    blog = site(inventory, "blog-staging")
    assert (blog.connection, blog.cms, blog.url) == ("local", "wordpress", None)
    assert_plain(shop.vars)


def test_directory_source(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("all:\n  hosts:\n    site-a:\n")
    (tmp_path / "b.ini").write_text("site-b\n")
    (tmp_path / "README.md").write_text("not an inventory: ansible skips *.md in inventory dirs\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("cms: joomla\n")
    inventory = load_inventory([tmp_path])
    assert sorted(names(inventory.sites)) == ["site-a", "site-b"]
    assert {s.cms for s in inventory.sites} == {"joomla"}


def test_several_sources_merge(production: Inventory) -> None:
    both = load_inventory([PRODUCTION, STAGING], vault_password_file=VAULT_PASS)
    assert set(names(both.sites)) == set(names(production.sites)) | {"shop-staging", "blog-staging"}
    assert both.digest != production.digest


# --- resolved vars -----------------------------------------------------------


def test_group_vars_and_host_vars_precedence(production: Inventory) -> None:
    alpha = site(production, "shop-alpha")
    beta = site(production, "shop-beta")
    blog = site(production, "blog-one")
    local = site(production, "demo-local")
    # child group (shops) over parent (production) over all
    assert alpha.cms == "wordpress"
    assert blog.cms == "drupal"
    assert local.cms == "static"
    assert blog.vars["backup"] == {"target": "s3://acme-backups/blog-one", "retention": 30}
    assert local.vars["backup"] == {"target": "file:///var/backups/demo-local", "retention": 7}
    # host_vars/ over group_vars/ (dicts are replaced, not merged: ansible's default)
    assert alpha.vars["sla"] == {"rto": "1h", "rpo": "15m"}
    assert beta.vars["sla"] == {"rto": "4h", "rpo": "24h"}
    # an inventory host var beats group_vars/ files
    assert beta.cms == "custom"
    # group_vars/production.yml beats the group's vars inside the inventory file
    assert blog.vars["maintenance_window"] == "Sun 02:00-04:00"
    # inventory-wide vars
    assert {s.user for s in production.sites} == {"deploy"}


def test_templates_rendered_and_vault_decrypted(production: Inventory) -> None:
    alpha = site(production, "shop-alpha")
    assert alpha.vars["docroot"] == "/srv/www/shop-alpha"
    assert alpha.vars["db"] == {
        "engine": "mariadb",
        "name": "shop_alpha",
        "user": "shop",
        "password": SHOP_DB_PASSWORD,
    }
    assert alpha.vars["payment_api_token"] == PAYMENT_TOKEN
    # a template that references a var from an encrypted vars file
    assert site(production, "blog-two").vars["db"]["password"] == BLOG_DB_PASSWORD


def test_vars_are_plain_data_without_ansible_internals(production: Inventory) -> None:
    for s in production.sites:
        assert_plain(s.vars)
        json.dumps(s.vars)
        yaml.safe_dump(s.vars)
        assert s.vars["inventory_hostname"] == s.name
        assert s.vars["group_names"] == s.groups
        assert not MAGIC_VARS & s.vars.keys()


def test_undefined_variable_in_template_is_bad_input(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text('all:\n  hosts:\n    site-a:\n      site_url: "https://{{ no_such_var }}/"\n')
    with pytest.raises(BadInput) as caught:
        load_inventory([inventory])
    assert caught.value.key == "site_url"
    assert caught.value.file == str(inventory)
    assert caught.value.line == 4
    assert "no_such_var" in str(caught.value)


def test_bad_port_is_bad_input(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("site-a ansible_port=ssh\n")
    with pytest.raises(BadInput, match="ansible_port"):
        load_inventory([inventory])


# --- --limit -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["shop-alpha", "blog-one", "demo-local", "shop-beta", "shop-gamma", "blog-two"]),
        ("all", ["shop-alpha", "blog-one", "demo-local", "shop-beta", "shop-gamma", "blog-two"]),
        ("shop*", ["shop-alpha", "shop-beta", "shop-gamma"]),
        ("blogs", ["blog-one", "blog-two"]),
        ("shop-alpha:blog-two", ["shop-alpha", "blog-two"]),
        ("shop-alpha,blog-two", ["shop-alpha", "blog-two"]),
        ("shops:!shop-beta", ["shop-alpha", "shop-gamma"]),
        ("all:!production", ["demo-local"]),
        ("production:&eu", ["shop-alpha", "blog-one"]),
        ("~blog-(one|two)", ["blog-one", "blog-two"]),
    ],
)
def test_limit_patterns(production: Inventory, pattern: str | None, expected: list[str]) -> None:
    assert names(production.select(pattern)) == expected  # always in inventory order


def test_limit_from_file(production: Inventory, tmp_path: Path) -> None:
    retry = tmp_path / "retry.txt"
    retry.write_text("shop-gamma\nblog-one\n")
    assert names(production.select(f"@{retry}")) == ["blog-one", "shop-gamma"]


def test_limit_matching_nothing_is_bad_input(production: Inventory) -> None:
    with pytest.raises(BadInput) as caught:
        production.select("shop-omega*")
    error = caught.value
    assert error.exit_code == ExitCode.BAD_INPUT
    assert "shop-omega*" in str(error)
    assert "shop-alpha" in str(error) and "shops" in str(error)  # known sites and groups


def test_limit_does_not_stick(production: Inventory) -> None:
    assert names(production.select("blogs")) == ["blog-one", "blog-two"]
    assert len(production.select(None)) == len(production.sites)
    assert names(production.select("local")) == ["demo-local"]


def test_select_on_inventory_built_by_hand() -> None:
    inventory = Inventory(
        sources=[],
        sites=[Site("a1", {}, ["web"]), Site("b1", {}, ["db", "web"]), Site("c1", {}, [])],
        digest="",
        redactor=Redactor(),
    )
    assert names(inventory.select("web:&db")) == ["b1"]
    assert names(inventory.select("ungrouped")) == ["c1"]


# --- vault -------------------------------------------------------------------


def test_vault_password_from_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_VAULT_PASSWORD_FILE", str(VAULT_PASS))
    inventory = load_inventory([PRODUCTION])
    assert site(inventory, "shop-beta").vars["db"]["password"] == SHOP_DB_PASSWORD


def test_vault_password_from_ansible_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(VAULT_PASS))
    inventory = load_inventory([INLINE_VAULT])
    assert inventory.sites[0].vars["db"]["password"] == INLINE_DB_PASSWORD


def test_vault_password_itself_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_VAULT_PASSWORD", VAULT_PASS.read_text().strip())
    inventory = load_inventory([PRODUCTION])
    assert site(inventory, "blog-one").vars["db"]["password"] == BLOG_DB_PASSWORD


def test_vault_password_argument_wins_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-password\n")
    monkeypatch.setenv("MAINTAINER_VAULT_PASSWORD_FILE", str(wrong))
    inventory = load_inventory([INLINE_VAULT], vault_password_file=VAULT_PASS)
    assert inventory.sites[0].vars["db"]["password"] == INLINE_DB_PASSWORD


def test_missing_vault_password_for_vault_file(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BadInput) as caught:
        load_inventory([PRODUCTION])
    error = caught.value
    assert error.exit_code == ExitCode.BAD_INPUT == 2
    assert error.file is not None and error.file.endswith("group_vars/blogs/vault.yml")
    assert "no vault password" in str(error)
    assert "--vault-password-file" in str(error) and "MAINTAINER_VAULT_PASSWORD_FILE" in str(error)
    assert capfd.readouterr().err == ""  # ansible's own warnings stay off stderr


def test_missing_vault_password_for_inline_value() -> None:
    with pytest.raises(BadInput) as caught:
        load_inventory([INLINE_VAULT])
    error = caught.value
    assert error.exit_code == 2
    assert error.key == "db.password"
    assert error.file == str(INLINE_VAULT) and error.line is not None
    assert "shop-vaulted" in str(error) and "--vault-password-file" in str(error)


@pytest.mark.parametrize("source", [PRODUCTION, INLINE_VAULT])
def test_wrong_vault_password(tmp_path: Path, source: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-password\n")
    with pytest.raises(BadInput, match="wrong password") as caught:
        load_inventory([source], vault_password_file=wrong)
    assert caught.value.exit_code == 2


def test_vault_password_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="vault password file not found") as caught:
        load_inventory([INLINE_VAULT], vault_password_file=tmp_path / "nope.txt")
    assert caught.value.file == str(tmp_path / "nope.txt")


# --- secrets -----------------------------------------------------------------


def test_secrets_masked(production: Inventory) -> None:
    alpha = production.masked_vars(site(production, "shop-alpha"))
    assert alpha["db"]["password"] == MASK
    assert alpha["db"]["user"] == "shop"
    assert alpha["payment_api_token"] == MASK
    blog = production.masked_vars(site(production, "blog-one"))
    assert blog["db"]["password"] == MASK
    assert blog["vault_smtp_relay_secret"] == MASK
    dumped = json.dumps([production.masked_vars(s) for s in production.sites])
    for secret in (SHOP_DB_PASSWORD, BLOG_DB_PASSWORD, SMTP_SECRET, PAYMENT_TOKEN):
        assert secret not in dumped
    # the real values stay available to the actions
    assert site(production, "shop-alpha").vars["db"]["password"] == SHOP_DB_PASSWORD


def test_redactor_knows_every_secret_value(production: Inventory) -> None:
    redact = production.redactor.text
    command = f"mysql -u shop -p{SHOP_DB_PASSWORD} shop_alpha"
    assert redact(command) == f"mysql -u shop -p{MASK} shop_alpha"
    # a value from an encrypted file is secret even under an innocent-looking key
    smtp_relay = f"relay with {SMTP_SECRET}"
    assert SMTP_SECRET not in redact(smtp_relay)
    for secret in (BLOG_DB_PASSWORD, PAYMENT_TOKEN, VAULT_PASS.read_text().strip()):
        assert secret not in redact(f"x{secret}x")


def test_secret_named_plain_vars_are_masked_too() -> None:
    inventory = load_inventory([STAGING])
    shop = site(inventory, "shop-staging")
    assert inventory.masked_vars(shop)["db_password"] == MASK
    assert inventory.redactor.text("pw=ini-plain-secret") == f"pw={MASK}"


def test_nested_secret_values_are_known(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    site-a:\n      db:\n        engine: mariadb\n        password: nested-pw-31337\n"
    )
    loaded = load_inventory([inventory])
    assert loaded.redactor.text("--password=nested-pw-31337") == f"--password={MASK}"


# --- digest ------------------------------------------------------------------


def test_digest_is_stable_and_location_independent(production: Inventory, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(PRODUCTION.parent, copy)
    again = load_inventory([copy / "hosts.yml"], vault_password_file=VAULT_PASS)
    assert len(production.digest) == 64
    assert again.digest == production.digest


def test_digest_changes_when_a_group_vars_file_changes(tmp_path: Path) -> None:
    copy = tmp_path / "production"
    shutil.copytree(PRODUCTION.parent, copy)
    before = load_inventory([copy / "hosts.yml"], vault_password_file=VAULT_PASS)
    all_vars = copy / "group_vars" / "all.yml"
    all_vars.write_text(all_vars.read_text().replace("retention: 7", "retention: 8"))
    after = load_inventory([copy / "hosts.yml"], vault_password_file=VAULT_PASS)
    assert after.digest != before.digest
    assert site(after, "demo-local").vars["backup"]["retention"] == 8
    # a new host_vars file counts too, and is seen by a reload in the same process
    (copy / "host_vars" / "shop-gamma.yml").write_text("cms: joomla\n")
    added = load_inventory([copy / "hosts.yml"], vault_password_file=VAULT_PASS)
    assert added.digest != after.digest
    assert site(added, "shop-gamma").cms == "joomla"


# --- bad input ---------------------------------------------------------------


def test_missing_inventory_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not found") as caught:
        load_inventory([tmp_path / "nope.yml"])
    assert caught.value.file == str(tmp_path / "nope.yml")
    assert caught.value.fix


def test_malformed_yaml_names_file_and_line(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BadInput) as caught:
        load_inventory([STAGING, BROKEN])  # one bad source fails the load, even beside a good one
    error = caught.value
    assert error.exit_code == 2
    assert error.file == str(BROKEN)
    assert error.line == 8
    assert "YAML" in str(error) and "broken/hosts.yml:8" in str(error)
    assert capfd.readouterr().err == ""


def test_malformed_ini_names_file(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[shops]\nshop-a\n[shops:oops]\nx\n")
    with pytest.raises(BadInput, match="oops") as caught:
        load_inventory([inventory])
    assert caught.value.file == str(inventory)


def test_malformed_group_vars_file(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    site-a:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("cms: [wordpress,\nurl: x\n")
    with pytest.raises(BadInput) as caught:
        load_inventory([tmp_path / "hosts.yml"])
    assert caught.value.file == str(tmp_path / "group_vars" / "all.yml")
    assert caught.value.line is not None


def test_inventory_without_hosts(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    shops: {}\n")
    with pytest.raises(BadInput, match="no hosts"):
        load_inventory([inventory])


# --- the same files work with Ansible ----------------------------------------


def test_same_inventory_works_with_ansible_inventory(production: Inventory) -> None:
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    if not ansible_inventory.exists():
        pytest.skip("ansible-inventory is not installed beside this Python")
    env = {**os.environ, "LANG": "C.UTF-8", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    done = subprocess.run(
        [str(ansible_inventory), "-i", str(PRODUCTION), "--vault-password-file", str(VAULT_PASS), "--list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    listed = json.loads(done.stdout)
    hostvars = listed["_meta"]["hostvars"]
    assert set(hostvars) == set(names(production.sites))
    assert sorted(listed["shops"]["hosts"]) == ["shop-alpha", "shop-beta", "shop-gamma"]
    assert sorted(listed["production"]["children"]) == ["blogs", "shops"]
    for s in production.sites:
        # same precedence; ansible-inventory shows templates unrendered, so compare plain vars
        for key in ("cms", "ansible_user", "ansible_host", "ansible_port", "maintenance_window"):
            assert hostvars[s.name].get(key) == s.vars.get(key), (s.name, key)


@pytest.mark.parametrize(
    ("declared", "kind"),
    [
        ("local", "local"),
        ("ansible.builtin.local", "local"),
        ("ssh", "ssh"),
        ("paramiko_ssh", "ssh"),
        ("ansible.builtin.ssh", "ssh"),
        ("community.docker.docker", "community.docker.docker"),
    ],
)
def test_the_site_and_its_transport_agree_on_the_connection(declared: str, kind: str) -> None:
    from maintainer.errors import BadInput
    from maintainer.inventory import Site
    from maintainer.transport import host_key

    site = Site("s", {"ansible_connection": declared, "ansible_host": "127.0.0.1"}, [])
    assert site.connection == kind
    if kind in ("local", "ssh"):
        assert host_key(site.vars, "s").connection == kind
    else:
        with pytest.raises(BadInput, match="not supported"):
            host_key(site.vars, "s")
