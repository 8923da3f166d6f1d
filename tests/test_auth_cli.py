"""``registry auth ...`` and auth config errors through the real CLI (subprocesses)."""

from __future__ import annotations

import json

import jwt
import yaml

import subprocess

from helpers import ROOT, registry_cmd, run_cli
from registry.auth import keys
from registry.auth.htpasswd import Htpasswd
from registry.auth.refresh import RefreshStore


def _config(tmp, name="config.yml", **tokenserver):
    block = {"issuer": "iss", "service": "svc", "users": str(tmp / "htpasswd"), "key": str(tmp / "k.pem"),
             "certificate": str(tmp / "c.pem"), "refreshtokens": {"path": str(tmp / "rt.json")},
             "rules": [{"account": "*", "name": "${account}/**", "actions": ["pull", "push"]}]}
    block.update(tokenserver)
    path = tmp / name
    path.write_text(yaml.safe_dump({
        "storage": {"inmemory": {}},
        "auth": {"token": {"realm": "http://127.0.0.1/auth/token", "service": "svc", "issuer": "iss",
                           "rootcertbundle": str(tmp / "c.pem")}},
        "tokenserver": block}))
    return path


def test_create_key_add_user_token_jwks_revoke(tmp_path):
    r = run_cli("auth", "create-key", "--key", str(tmp_path / "k.pem"), "--cert", str(tmp_path / "c.pem"),
                "--type", "rsa")
    assert r.returncode == 0, r.stderr
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    key = keys.load_private_key(tmp_path / "k.pem")
    assert keys.signing_algorithm(key) == "RS256"
    assert keys.same_key(keys.load_certificates(tmp_path / "c.pem")[0].public_key(), key.public_key())
    r = run_cli("auth", "create-key", "--key", str(tmp_path / "k.pem"), "--cert", str(tmp_path / "c.pem"))
    assert r.returncode == 1 and "exists" in r.stderr
    r = subprocess.run(registry_cmd("auth", "add-user", str(tmp_path / "htpasswd"), "alice", "--password-stdin",
                                    "--cost", "4"), input="s3cret\n", capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "added user alice" in r.stdout, r.stderr
    assert Htpasswd(tmp_path / "htpasswd").check("alice", "s3cret")
    config = _config(tmp_path)
    assert run_cli("check-config", str(config)).returncode == 0
    r = run_cli("auth", "token", "-c", str(config), "--account", "alice",
                "--scope", "repository:alice/app:pull,push,delete", "--scope", "repository:bob/x:pull")
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(r.stdout.strip(), key.public_key(), algorithms=["RS256"], audience="svc", issuer="iss")
    assert claims["access"] == [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]
    assert "granted repository:alice/app:pull,push of" in r.stderr
    r = run_cli("auth", "token", "-c", str(config), "--anonymous", "--json")
    assert json.loads(r.stdout)["scope"] == ""
    jwks = json.loads(run_cli("auth", "jwks", "-c", str(config)).stdout)
    assert jwks["keys"][0]["kty"] == "RSA" and jwks["keys"][0]["kid"] == keys.thumbprint(key.public_key())
    store = RefreshStore(tmp_path / "rt.json", 3600)
    t = store.issue("alice", "cli", "svc")
    r = run_cli("auth", "revoke", "-c", str(config), "--account", "alice")
    assert r.returncode == 0 and "revoked 1" in r.stdout
    assert store.lookup(t) is None


def test_auth_config_errors_are_one_line(tmp_path):
    run_cli("auth", "create-key", "--key", str(tmp_path / "k.pem"), "--cert", str(tmp_path / "c.pem"))
    (tmp_path / "htpasswd").write_text("")
    cases = [
        (_config(tmp_path, "1.yml", key=str(tmp_path / "missing.pem")), "cannot read signing key"),
        (_config(tmp_path, "2.yml", rules=[{"account": "x", "name": "a", "actions": ["fly"]}]),
         "unknown repository action"),
        (_config(tmp_path, "3.yml", expiration="5s"), "between 60s and 24h"),
    ]
    for config, message in cases:
        for command in (["check-config", str(config)], ["serve", str(config)]):
            r = run_cli(*command)
            assert r.returncode == 1 and message in r.stderr, (command, r.stderr)
            assert "Traceback" not in r.stderr
    bad_users = _config(tmp_path)
    (tmp_path / "htpasswd").write_text("alice:plaintext\n")
    r = run_cli("check-config", str(bad_users))
    assert r.returncode == 1 and "only bcrypt" in r.stderr and "plaintext" not in r.stderr
    r = run_cli("auth", "serve-token", "-c", str(bad_users))
    assert r.returncode == 1 and "only bcrypt" in r.stderr
