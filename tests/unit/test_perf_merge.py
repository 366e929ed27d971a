"""perf.merge: maintainer's settings written into the operator's config files, everything else kept."""

from __future__ import annotations

import difflib

import pytest

from maintainer.perf.merge import MergeError, merge_ini, merge_nginx

POOL = """\
; the operator's pool
[www]
user = www-data
listen = /run/php/php8.2-fpm.sock
pm = dynamic
pm.max_children = 5
  pm.start_servers = 2
php_admin_value[memory_limit] = 256M
env[APP_ENV] = production

[other]
pm.max_children = 3
"""
POOL_FRAGMENT = """\
[www]
; maintainer: reason one
pm.max_children = 16
; maintainer: reason two
pm.start_servers = 4
; maintainer: reason three
pm.max_requests = 500
"""


def removed_and_added(old: str, new: str) -> tuple[list[str], list[str]]:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0))[2:]
    removed = [line[1:] for line in lines if line.startswith("-")]
    added = [line[1:] for line in lines if line.startswith("+")]
    return removed, added


def test_ini_changes_only_the_managed_keys_and_keeps_every_other_line() -> None:
    merged = merge_ini(POOL, POOL_FRAGMENT)
    removed, added = removed_and_added(POOL, merged)
    assert removed == ["pm.max_children = 5", "  pm.start_servers = 2"]
    assert added == [
        "; maintainer: reason one",
        "pm.max_children = 16",
        "  ; maintainer: reason two",
        "  pm.start_servers = 4",  # where it stood, as indented as it was
        "; maintainer: reason three",
        "pm.max_requests = 500",  # new: after the managed ones
    ]
    # the other pool is not touched
    assert merged.endswith("[other]\npm.max_children = 3\n")


def test_ini_rerun_replaces_its_own_reasons_and_changes_nothing_else() -> None:
    once = merge_ini(POOL, POOL_FRAGMENT)
    assert merge_ini(once, POOL_FRAGMENT) == once
    again = merge_ini(once, POOL_FRAGMENT.replace("reason one", "a new reason"))
    assert removed_and_added(once, again) == (["; maintainer: reason one"], ["; maintainer: a new reason"])


def test_ini_adds_a_missing_section_and_sets_a_key_set_twice_everywhere() -> None:
    merged = merge_ini("[mysqld]\nmax_connections = 100\nmax_connections = 200\n", "[mariadbd]\nkey = 1\n")
    assert merged == "[mysqld]\nmax_connections = 100\nmax_connections = 200\n\n[mariadbd]\nkey = 1\n"
    twice = merge_ini("[a]\nk = 1\nk = 2\n", "[a]\nk = 3\n")
    assert twice == "[a]\nk = 3\nk = 3\n"


NGINX = """\
# the operator's nginx.conf
user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {
	worker_connections 768;
}

http {
	sendfile on;
	client_max_body_size 64m; # uploads
	keepalive_timeout 65;
	log_format main '$remote_addr "$request" {braces; in quotes}';
	gzip on;
	include /etc/nginx/conf.d/*.conf;
	server {
		listen 8080;
		location /custom { return 204; }
	}
}
"""
NGINX_FRAGMENT = """\
# maintainer: one per CPU
worker_processes 2;
worker_rlimit_nofile 8192;
events {
    # maintainer: per worker
    worker_connections 4096;
}
http {
    # maintainer: short keep-alive
    keepalive_timeout 15;
    # maintainer: compress
    gzip on;
    gzip_types text/css
               application/javascript;
    map $sent_http_content_type $maintainer_expires {
        default off;
        ~^image/ 30d;
    }
    expires $maintainer_expires;
}
"""


def test_nginx_changes_only_the_managed_directives_in_their_blocks() -> None:
    merged = merge_nginx(NGINX, NGINX_FRAGMENT)
    removed, added = removed_and_added(NGINX, merged)
    assert removed == ["worker_processes auto;", "\tworker_connections 768;", "\tkeepalive_timeout 65;"]
    assert added == [
        "# maintainer: one per CPU",
        "worker_processes 2;",
        "worker_rlimit_nofile 8192;",  # new: after the managed one before it
        "\t# maintainer: per worker",
        "\tworker_connections 4096;",  # the file's own indentation (tabs)
        "\t# maintainer: short keep-alive",
        "\tkeepalive_timeout 15;",
        "\t# maintainer: compress",
        "\tgzip_types text/css",
        "\t           application/javascript;",
        "\tmap $sent_http_content_type $maintainer_expires {",
        "\t    default off;",
        "\t    ~^image/ 30d;",
        "\t}",
        "\texpires $maintainer_expires;",
    ]
    for kept in ("client_max_body_size 64m; # uploads", "location /custom { return 204; }", "{braces; in"):
        assert kept in merged
    assert merge_nginx(merged, NGINX_FRAGMENT) == merged  # a re-run changes nothing


def test_nginx_adds_missing_blocks_and_directives_at_the_start_of_a_block() -> None:
    merged = merge_nginx("# top\nuser nginx;\nhttp {\n    server { listen 80; }\n}\n", NGINX_FRAGMENT)
    assert merged.startswith(
        "# top\n# maintainer: one per CPU\nworker_processes 2;\nworker_rlimit_nofile 8192;\n"
    )
    assert "http {\n    # maintainer: short keep-alive\n    keepalive_timeout 15;" in merged
    assert "server { listen 80; }" in merged and "events {\n    # maintainer: per worker" in merged


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http {\n    gzip on;\n", "the block 'http' is not closed"),
        ("http {\n    gzip on\n}\n", "a directive without ';' before '}'"),
        ("gzip on;\n}\n", "a '}' that closes no block"),
        ("log_format x 'open;\n", "an unclosed quote"),
    ],
)
def test_nginx_refuses_a_file_it_cannot_read_safely(text: str, message: str) -> None:
    with pytest.raises(MergeError, match=message):
        merge_nginx(text, NGINX_FRAGMENT)


def test_ini_refuses_a_template_line_that_is_no_setting() -> None:
    with pytest.raises(MergeError, match="no 'key = value'"):
        merge_ini("[www]\n", "[www]\nnot a setting\n")
