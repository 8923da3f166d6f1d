"""``python benchmarks/gc_floor.py ROOT [-m]``: the least work a Python process does to collect the
benchmark's root -- a bound, not a collector.

It does only the system calls no collector can avoid on this layout: list the blob prefixes and
each repository's links, read and parse every manifest once (and every tag's link with ``-m``),
then unlink and remove the directories of what is unreferenced, in 32 threads. It has no
configuration, lease, barrier, progress or summary; it validates no name or digest and does not
check a manifest against its digest; and it knows what the generated root holds (image manifests
only, nothing nested deeper than ``team/app``, one file per blob and link directory). Whatever
the real collector does beyond this is overhead over the interpreter's floor: ``benchmarks.gc``
times it beside the reference on the same copies, so its ratio says how fast any collector in
Python can be on this machine and file system.

Standard library only, no imports from this project, so that its start-up is the interpreter's.
"""

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor


def main(root: str, untagged: bool) -> None:
    v2 = root + "/docker/registry/v2"
    blob_root = v2 + "/blobs/sha256"
    blobs = {enc: f"{blob_root}/{prefix}/{enc}" for prefix in os.listdir(blob_root)
             for enc in os.listdir(f"{blob_root}/{prefix}")}
    repo_root = v2 + "/repositories"
    repos = [f"{repo_root}/{team}/{app}" for team in os.listdir(repo_root) for app in os.listdir(f"{repo_root}/{team}")]
    marked: set[str] = set()
    doomed_dirs: list[str] = []
    layer_links: list[tuple[str, list[str]]] = []
    for repo in repos:
        layer_links.append((repo, os.listdir(repo + "/_layers/sha256")))
        revisions = os.listdir(repo + "/_manifests/revisions/sha256")
        if untagged:
            tags_dir = repo + "/_manifests/tags"
            tagged = set()
            for tag in os.listdir(tags_dir):
                with open(f"{tags_dir}/{tag}/current/link", "rb") as f:
                    tagged.add(f.read().decode()[7:])
            for enc in revisions:
                if enc not in tagged:
                    doomed_dirs.append(f"{repo}/_manifests/revisions/sha256/{enc}")
            revisions = [enc for enc in revisions if enc in tagged]
        for enc in revisions:
            marked.add(enc)
            with open(f"{blob_root}/{enc[:2]}/{enc}/data", "rb") as f:
                manifest = json.loads(f.read())
            marked.add(manifest["config"]["digest"][7:])
            marked.update(layer["digest"][7:] for layer in manifest["layers"])
    doomed_dirs += [path for enc, path in blobs.items() if enc not in marked]
    doomed_dirs += [f"{repo}/_layers/sha256/{enc}" for repo, links in layer_links for enc in links if enc not in marked]

    def remove(directory: str) -> None:
        os.unlink(directory + ("/data" if directory.startswith(blob_root) else "/link"))
        os.rmdir(directory)

    with ThreadPoolExecutor(32) as pool:
        for _ in pool.map(remove, doomed_dirs):
            pass


if __name__ == "__main__":
    main(sys.argv[1], "-m" in sys.argv[2:])
    os._exit(0)  # a bound: no interpreter tear-down
