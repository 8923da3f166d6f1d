"""Deployment artefacts: the container image `make image` builds (inspected, its entrypoint run in a
chroot of its root filesystem, an image pushed and pulled through it), the Containerfile describing
the same image, and the systemd units (systemd-analyze verify)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT, free_port, missing, require_tool

NEEDED = ("mmdebstrap", "buildah", "skopeo", "umoci", "chroot")


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`make image` once per run (the slow part: Debian packages, wheels, a 300 MB layer); with only
    the `fast` extra to keep the run short -- the build steps are the same for every extra."""
    if os.geteuid() != 0:
        missing("make image needs root")
    require_tool(*NEEDED, hint="`make test-deps` installs them")
    work = tmp_path_factory.mktemp("image")
    archive = work / "pyregistry.tar"
    flags = f"--root {work}/storage --runroot {work}/run --storage-driver vfs"
    result = subprocess.run(
        ["make", "-s", "image", f"VENV={sys.prefix}", "IMAGE=localhost/pyregistry:test", f"IMAGE_ARCHIVE={archive}",
         f"BUILD_DIR={work}/build", "EXTRAS=fast", f"BUILDAH_FLAGS={flags}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    oci = work / "oci"
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{archive}", f"oci:{oci}:test"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{oci}:test", str(work / "bundle")], check=True,
                   capture_output=True)
    return {"archive": archive, "rootfs": work / "bundle" / "rootfs", "work": work}


def _image_config(archive: Path) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{archive}"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["config"]


def test_image_entrypoint_port_and_volume(image: dict[str, Path]) -> None:
    config = _image_config(image["archive"])
    assert config["Entrypoint"] == ["/entrypoint.sh"]
    assert config["Cmd"] == ["/etc/distribution/config.yml"]
    assert "5000/tcp" in config["ExposedPorts"]
    assert "/var/lib/registry" in config["Volumes"]
    rootfs = image["rootfs"]
    assert (rootfs / "opt/pyregistry/bin/registry").exists()
    assert (rootfs / "etc/docker/registry/config.yml").resolve(strict=False).name == "config.yml"
    assert not any((rootfs / "dev").iterdir())  # the runtime provides /dev


def test_containerfile_describes_the_same_image(image: dict[str, Path]) -> None:
    text = (ROOT / "Containerfile").read_text()
    config = _image_config(image["archive"])
    assert json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1)) == config["Entrypoint"]
    assert json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1)) == config["Cmd"]
    assert json.loads(re.search(r"^VOLUME (.+)$", text, re.M).group(1)) == list(config["Volumes"])
    assert f"{re.search(r'^EXPOSE (.+)$', text, re.M).group(1)}/tcp" in config["ExposedPorts"]
    for path in ("/opt/pyregistry", "/etc/distribution/config.yml", "/entrypoint.sh", "/etc/docker/registry"):
        assert path in text


@contextlib.contextmanager
def _chroot_registry(rootfs: Path, port: int) -> Iterator[subprocess.Popen]:
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    env = {"PATH": "/opt/pyregistry/bin:/usr/local/bin:/usr/bin:/bin", "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
           "REGISTRY_LOG_ACCESSLOG_DISABLED": "true"}
    log = open(rootfs.parent / "chroot.log", "wb")
    # the image's own entrypoint and default command, as a container runtime would start it
    proc = subprocess.Popen([chroot, str(rootfs), "/entrypoint.sh", "/etc/distribution/config.yml"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as resp:
                    assert resp.status == 200
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((rootfs.parent / "chroot.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_image_entrypoint_in_a_chroot_serves_push_and_pull(image: dict[str, Path]) -> None:
    port = free_port()
    target = f"docker://127.0.0.1:{port}/library/pyregistry:selfhosted"
    pulled = image["work"] / "pulled"
    with _chroot_registry(image["rootfs"], port):
        # push the image itself into the registry it runs, and pull it back
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{image['archive']}", target],
                       check=True, timeout=600)
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", target, f"oci:{pulled}:pulled"],
                       check=True, timeout=600)
        remote = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", target], check=True,
                                           capture_output=True, text=True).stdout)
    local = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{image['archive']}"], check=True,
                                      capture_output=True, text=True).stdout)
    assert remote["Layers"] == local["Layers"]
    copy = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{pulled}:pulled"], check=True,
                                     capture_output=True, text=True).stdout)
    assert copy["Layers"] == local["Layers"]
    # the blobs are in the image's volume, in distribution's layout
    blobs = image["rootfs"] / "var/lib/registry/docker/registry/v2/blobs/sha256"
    for layer in local["Layers"]:
        hexdigest = layer.split(":", 1)[1]
        assert (blobs / hexdigest[:2] / hexdigest / "data").exists()


def test_systemd_units_verify(tmp_path: Path) -> None:
    require_tool("systemd-analyze", hint="`make test-deps` installs systemd")
    registry = Path(sys.prefix) / "bin" / "registry"
    for name in ("pyregistry.service", "pyregistry.socket"):
        text = (ROOT / "deploy" / name).read_text()
        # verify checks that ExecStart exists: point it at this checkout's registry
        (tmp_path / name).write_text(text.replace("/usr/local/bin/registry", str(registry)))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "pyregistry.service"),
                             str(tmp_path / "pyregistry.socket")], capture_output=True, text=True)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "pyregistry" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr
