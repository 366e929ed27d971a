"""Shared fixtures. Real servers live in tests/servers/, one module each."""

pytest_plugins = ["tests.servers.sshd", "tests.servers.mariadb", "tests.servers.s3", "tests.servers.web", "tests.servers.os_patching", "tests.servers.wpcli", "tests.servers.postgres"]
