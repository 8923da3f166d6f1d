"""Configuration: distribution's config.yml shape, REGISTRY_* overrides, clear errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from registry.config import ConfigError, load_config, parse_duration

DISTRIBUTION_STYLE = """
version: 0.1
log:
  level: debug
  formatter: text
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
http:
  addr: :5000
  secret: asecretforlocaldevelopment
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_distribution_file_loads_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ={})
    assert config.storage.driver == "filesystem"
    assert config.storage.params == {"rootdirectory": "/var/lib/registry"}
    assert config.storage.delete_enabled is True
    assert config.storage.redirect_disable is True
    assert config.storage.uploadpurging.age == 168 * 3600
    assert config.http.addr == ":5000"
    assert config.http.host_port == ("0.0.0.0", 5000)
    assert config.http.secret == "asecretforlocaldevelopment"
    assert config.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert config.log.level == "debug"
    # health is honoured now (registry/observe): the storage driver check with its threshold
    [check] = config.health.checks
    assert (check.kind, check.interval, check.threshold) == ("storagedriver", 10.0, 3)
    assert not any("health" in r.getMessage() for r in caplog.records)


def test_unknown_key_is_a_warning_naming_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  addr: 127.0.0.1:5000\n  bogus: 1\nfrobnicate: 2\n"
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, text), environ={})
    assert config.storage.driver == "inmemory"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "http.bogus" in messages and "frobnicate" in messages


def test_embedded_default() -> None:
    config = load_config(None, environ={})
    assert config.storage.driver == "filesystem"
    assert config.storage.params == {"rootdirectory": os.path.abspath("data")}
    assert config.http.addr == "127.0.0.1:5000"
    assert config.http.secret  # generated
    assert config.http.secret_generated


def test_env_overrides_take_yaml_values(tmp_path: Path) -> None:
    env = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x",
        "REGISTRY_HTTP_ADDR": "127.0.0.1:6000",
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_HTTP_HEADERS": "{X-A: [b]}",
        "REGISTRY_VALIDATION_MANIFESTS_MAXSIZE": "8388608",
    }
    config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.storage.params == {"rootdirectory": "/x"}
    assert config.http.addr == "127.0.0.1:6000"
    assert config.storage.delete_enabled is False
    assert config.http.headers == {"X-A": ["b"]}
    assert config.validation.manifests_maxsize == 8 * 1024 * 1024


def test_env_switches_storage_driver(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "images", "REGISTRY_STORAGE_S3_REGION": "eu-west-1"}
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.storage.driver == "s3"
    assert config.storage.params == {"bucket": "images", "region": "eu-west-1"}
    # as in distribution, REGISTRY_STORAGE replaces the whole section: the file's options are gone, aloud
    assert config.storage.delete_enabled is False
    assert any("storage.delete" in r.getMessage() and "REGISTRY_STORAGE" in r.getMessage() for r in caplog.records)
    # ...and variables after it (sorted order) fill it again
    env["REGISTRY_STORAGE_DELETE_ENABLED"] = "true"
    assert load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env).storage.delete_enabled is True


def test_other_env_vars_are_ignored() -> None:
    config = load_config(None, environ={"PATH": "/bin", "REGISTRYX": "1"})
    assert config.storage.driver == "filesystem"


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("storage:\n  filesystem: {rootdirectory: /a}\n  inmemory: {}\n", {}, "more than one storage driver"),
        ("storage:\n  delete: {enabled: true}\n", {}, "no storage driver"),
        ("storage:\n  inmemory: {}\n  delete: {enabled: sometimes}\n", {}, "storage.delete.enabled"),
        ("http:\n  addr: localhost\n", {}, "http.addr"),
        ("http:\n  addr: 127.0.0.1:99999\n", {}, "http.addr"),
        ("log:\n  level: loud\n", {}, "log.level"),
        ("- a\n- b\n", {}, "mapping"),
        ("http: [1, 2]\n", {}, "http"),
        ("storage:\n  maintenance:\n    uploadpurging: {age: soon}\n  inmemory: {}\n", {}, "uploadpurging.age"),
        ("version: 0.1\n", {"REGISTRY_HTTP_ADDR": "[oops"}, "REGISTRY_HTTP_ADDR"),
        ("version: 0.1\n", {"REGISTRY_HTTP_WORKERS": "zero"}, "http.workers"),
        ("auth:\n  htpasswd: {}\n  token: {}\n", {}, "more than one auth"),
        ("version: [\n", {}, "not valid YAML"),
    ],
)
def test_bad_values_are_one_clear_line(tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yml", environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("1m30s", 90), ("168h", 604800), ("500ms", 0.5), (5, 5)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("text", ["10", "h", "10x", "-1s", "", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text, "k")


# --------------------------------------------------------------------------- one rule for every key


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("storage:\n  inmemory: {}\n  delete:\n    enabeld: true\n",
         "unknown key storage.delete.enabeld ignored (did you mean storage.delete.enabled?)"),
        ("storage:\n  inmemory: {}\n  maintenance:\n    uploadpurging:\n      intreval: 1h\n",
         "storage.maintenance.uploadpurging.intreval ignored (did you mean storage.maintenance.uploadpurging.interval?)"),
        ("storage:\n  inmemory: {}\nhttp:\n  relativeurl: true\n",
         "http.relativeurl ignored (did you mean http.relativeurls?)"),
        ("storage:\n  inmemory: {}\nlogg:\n  level: info\n", "unknown key logg ignored (did you mean log?)"),
        ("storage:\n  inmemory: {}\nlog:\n  accesslog:\n    disable: true\n",
         "log.accesslog.disable ignored (did you mean log.accesslog.disabled?)"),
        ("storage:\n  inmemory: {}\nvalidation:\n  manifests:\n    urls:\n      alow: [x]\n",
         "validation.manifests.urls.alow ignored (did you mean validation.manifests.urls.allow?)"),
        ("storage:\n  inmemory: {}\nauth:\n  htpasswd:\n    realm: r\n    path: /p\n    pth: /q\n",
         "auth.htpasswd.pth ignored (did you mean auth.htpasswd.path?)"),
        ("storage:\n  inmemory: {}\ntokenserver:\n  issuer: i\n  service: s\n  users: u\n  key: k\n"
         "  ratelimit:\n    failure: 3\n",
         "tokenserver.ratelimit.failure ignored (did you mean tokenserver.ratelimit.failures?)"),
        ("storage:\n  inmemory: {}\ntokenserver:\n  issuer: i\n  service: s\n  users: u\n  key: k\n"
         "  rules:\n    - account: a\n      name: x\n      action: [pull]\n      actions: [pull]\n",
         "tokenserver.rules[0].action ignored (did you mean tokenserver.rules[0].actions?)"),
        ("storage:\n  inmemory: {}\nhttp:\n  Addr: 127.0.0.1:5000\n", "http.Addr ignored (did you mean http.addr?)"),
    ],
)
def test_a_typo_is_warned_at_every_depth(tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str,
                                         expected: str) -> None:
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, "version: 0.1\n" + text), environ={})
    assert expected in warnings_of(caplog)
    assert expected in " ".join(config.warnings)


def test_a_driver_key_typo_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from registry.app import open_driver

    config = load_config(write(tmp_path, f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}\n"
                                         "    rootdirectroy: /x\n"), environ={})
    with caplog.at_level(logging.WARNING):
        open_driver(config)
        open_driver(config)  # warned once per process, not at every open
    expected = "storage.filesystem.rootdirectroy ignored (did you mean storage.filesystem.rootdirectory?)"
    assert warnings_of(caplog).count(expected) == 1


def test_an_env_typo_names_its_variable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_config(write(tmp_path, "version: 0.1\nstorage:\n  inmemory: {}\n"),
                    environ={"REGISTRY_STORAGE_DELETE_ENABLD": "true"})
    assert ("storage.delete.enabld ignored (did you mean storage.delete.enabled?) "
            "(from REGISTRY_STORAGE_DELETE_ENABLD)") in warnings_of(caplog)


def test_known_but_unimplemented_keys_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = ("version: 0.1\nstorage:\n  inmemory: {}\n  tag:\n    concurrencylimit: 4\n"
            "reporting:\n  bugsnag:\n    apikey: k\nmiddleware:\n  storage:\n    - name: cloudfront\n")
    with caplog.at_level(logging.WARNING):
        load_config(write(tmp_path, text), environ={})
    found = warnings_of(caplog)
    for key in ("storage.tag.concurrencylimit", "reporting", "middleware"):
        assert f"{key} is not supported by this registry and is ignored" in found
    assert "unknown key" not in found


@pytest.mark.parametrize("text", ["version: 0.2\n", "version: 1\n", "version: abc\n"])
def test_unsupported_version_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="unsupported configuration version"):
        load_config(write(tmp_path, text + "storage: inmemory\n"), environ={})


def test_string_forms_of_storage_and_auth(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "version: 0.1\nstorage: inmemory\n"), environ={})
    assert config.storage.driver == "inmemory" and config.storage.params == {}


# --------------------------------------------------------------------------- environment, as distribution's parser


def test_env_string_section_filled_by_deeper_variables(tmp_path: Path) -> None:
    """The basic-auth recipe of distribution's deploying guide."""
    env = {"REGISTRY_AUTH": "htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
           "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd"}
    config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.auth == {"htpasswd": {"realm": "Registry Realm", "path": "/auth/htpasswd"}}


def test_env_string_section_replaces_the_files(tmp_path: Path) -> None:
    text = DISTRIBUTION_STYLE + "auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n"
    config = load_config(write(tmp_path, text), environ={"REGISTRY_AUTH": "htpasswd",
                                                         "REGISTRY_AUTH_HTPASSWD_PATH": "/p"})
    assert config.auth == {"htpasswd": {"path": "/p"}}


def test_env_list_indexes(tmp_path: Path) -> None:
    text = "version: 0.1\nstorage: inmemory\nvalidation:\n  manifests:\n    urls:\n      allow: ['^https://a/']\n"
    env = {
        "REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_0": "^https://b/",  # replaces element 0
        "REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_1": "^https://c/",  # appends
        "REGISTRY_VALIDATION_MANIFESTS_URLS_DENY_0": "^http://",  # creates the list
    }
    config = load_config(write(tmp_path, text), environ=env)
    assert config.validation.urls_allow == ["^https://b/", "^https://c/"]
    assert config.validation.urls_deny == ["^http://"]


def test_env_list_index_of_a_list_of_sections(tmp_path: Path) -> None:
    env = {"REGISTRY_TOKENSERVER_ISSUER": "i", "REGISTRY_TOKENSERVER_SERVICE": "s", "REGISTRY_TOKENSERVER_USERS": "u",
           "REGISTRY_TOKENSERVER_KEY": "k", "REGISTRY_TOKENSERVER_RULES_0_ACCOUNT": "alice",
           "REGISTRY_TOKENSERVER_RULES_0_NAME": "alice/*", "REGISTRY_TOKENSERVER_RULES_0_ACTIONS": "[pull]"}
    config = load_config(write(tmp_path, "version: 0.1\nstorage: inmemory\n"), environ=env)
    assert config.tokenserver["rules"] == [{"account": "alice", "name": "alice/*", "actions": ["pull"]}]


def test_env_list_index_past_the_end_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_2: undefined index 2"):
        load_config(write(tmp_path, "version: 0.1\nstorage: inmemory\n"),
                    environ={"REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW_2": "x"})


def test_env_configuration_path_is_not_a_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "version: 0.1\nstorage: inmemory\n")
    with caplog.at_level(logging.WARNING):
        load_config(path, environ={"REGISTRY_CONFIGURATION_PATH": str(path)})
    assert "configuration" not in warnings_of(caplog)


def test_env_variables_apply_in_sorted_order(tmp_path: Path) -> None:
    # REGISTRY_STORAGE sorts before REGISTRY_STORAGE_INMEMORY..., whatever order the mapping has
    env = {"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_S3_REGION": "r", "REGISTRY_STORAGE": "s3"}
    config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.storage.driver == "s3" and config.storage.params == {"bucket": "b", "region": "r"}


def test_env_string_values_stay_strings(tmp_path: Path) -> None:
    env = {"REGISTRY_HTTP_SECRET": "0123", "REGISTRY_HTTP_HOST": "yes"}
    config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.http.secret == "0123" and config.http.host == "yes"


def test_env_below_a_plain_value_is_warned_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ={"REGISTRY_HTTP_ADDR_PORT": "5"})
    assert config.http.addr == ":5000"
    assert "REGISTRY_HTTP_ADDR_PORT" in warnings_of(caplog)


def test_listing_page_sizes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """distribution's catalog.maxentries and tags.maxtags; 0 (and, for the catalog, below 0) is the default."""
    base = "storage:\n  inmemory: {}\n"
    assert load_config(write(tmp_path, base), environ={}).listing.catalog_maxentries == 1000
    assert load_config(write(tmp_path, base), environ={}).listing.tags_maxtags == 10000
    text = base + "catalog:\n  maxentries: 50\n  bogus: 1\ntags:\n  maxtags: 20\n"
    with caplog.at_level(logging.WARNING):
        listing = load_config(write(tmp_path, text), environ={}).listing
    assert (listing.catalog_maxentries, listing.tags_maxtags) == (50, 20)
    assert "catalog.bogus" in " ".join(r.getMessage() for r in caplog.records)
    listing = load_config(write(tmp_path, base + "catalog: {maxentries: -5}\ntags: {maxtags: 0}\n"), environ={}).listing
    assert (listing.catalog_maxentries, listing.tags_maxtags) == (1000, 10000)
    env = {"REGISTRY_CATALOG_MAXENTRIES": "7", "REGISTRY_TAGS_MAXTAGS": "9"}
    listing = load_config(write(tmp_path, base), environ=env).listing
    assert (listing.catalog_maxentries, listing.tags_maxtags) == (7, 9)
    for bad, needle in (("tags: {maxtags: -1}\n", "tags.maxtags"), ("catalog: {maxentries: many}\n", "catalog.maxentries")):
        with pytest.raises(ConfigError, match=needle):
            load_config(write(tmp_path, base + bad), environ={})


# --------------------------------------------------------------------------- the environment cases of distribution's docs

IMAGE_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "config.yml"


def test_docs_env_rootdirectory() -> None:
    config = load_config(IMAGE_CONFIG, environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/somewhere"})
    assert config.storage.params == {"rootdirectory": "/somewhere"}


def test_docs_env_listen_address() -> None:
    assert load_config(IMAGE_CONFIG, environ={"REGISTRY_HTTP_ADDR": "0.0.0.0:5001"}).http.host_port == ("0.0.0.0", 5001)


def test_docs_env_tls_and_basic_auth_recipe() -> None:
    """The deploying guide's `docker run -e ...` for TLS plus native basic auth."""
    env = {"REGISTRY_AUTH": "htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
           "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd", "REGISTRY_HTTP_ADDR": "0.0.0.0:443",
           "REGISTRY_HTTP_TLS_CERTIFICATE": "/certs/domain.crt", "REGISTRY_HTTP_TLS_KEY": "/certs/domain.key"}
    config = load_config(IMAGE_CONFIG, environ=env)
    assert config.auth == {"htpasswd": {"realm": "Registry Realm", "path": "/auth/htpasswd"}}
    assert config.http.tls is not None and config.http.tls.certificate == "/certs/domain.crt"
    assert config.http.tls.key == "/certs/domain.key" and config.http.host_port == ("0.0.0.0", 443)


def test_docs_env_list_element(tmp_path: Path) -> None:
    """The configuration reference's list example: REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0."""
    text = ("version: 0.1\nstorage: inmemory\nhttp:\n  tls:\n    letsencrypt:\n"
            f"      cachefile: {tmp_path / 'acme'}\n      hosts: [myregistryaddress.org]\n")
    config = load_config(write(tmp_path, text), environ={"REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0": "registry.example.com"})
    assert config.http.tls is not None and config.http.tls.letsencrypt is not None
    assert config.http.tls.letsencrypt.hosts == ["registry.example.com"]


@pytest.mark.parametrize(("http", "expected"), [
    ("  http2:\n    disabled: false\n", "HTTP/2 is not served"),
    ("  h2c:\n    enabled: true\n", "HTTP/2 cleartext is not served"),
])
def test_http2_and_h2c_are_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture, http: str, expected: str) -> None:
    with caplog.at_level(logging.WARNING):
        load_config(write(tmp_path, "version: 0.1\nstorage: inmemory\nhttp:\n" + http), environ={})
    assert expected in warnings_of(caplog)


def test_http2_disabled_needs_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_config(write(tmp_path, "version: 0.1\nstorage: inmemory\nhttp:\n  http2:\n    disabled: true\n"), environ={})
    assert not warnings_of(caplog)
