"""Media types the registry knows, in one place.

The registry stores no media type next to a manifest (neither does the reference registry, whose
storage we share): it is detected from the body when served, see ``registry.manifests``.
"""

from __future__ import annotations

# --- OCI image spec v1.1 -------------------------------------------------------------------------
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# deprecated by image spec 1.1 but still found in the wild; clients fetch them from ``urls``
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

#: the empty JSON object ``{}`` used as config (and layer) of artifacts; image spec 1.1
OCI_EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_EMPTY_SIZE = 2
OCI_EMPTY_DATA = b"{}"

# --- Docker image manifest v2 schema 2 ---------------------------------------------------------
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"

# --- Docker image manifest v2 schema 1 (deprecated) ----------------------------------------------
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
#: what distribution names a schema 1 layer in its descriptors
DOCKER_SCHEMA1_LAYER = "application/vnd.docker.container.image.rootfs.diff+x-gtar"

SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1})
#: manifests whose body lists other manifests
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
#: manifests with a config and layers
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES | SCHEMA1_MEDIA_TYPES

#: layers that clients may fetch from their ``urls`` instead of the registry
NON_DISTRIBUTABLE_LAYERS = frozenset(
    {
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        DOCKER_FOREIGN_LAYER,
    }
)

#: Content-Type values that say nothing about the manifest kind: the body decides
GENERIC_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})


def base_type(value: str | None) -> str:
    """``type/subtype`` of a Content-Type or Accept entry, lower-cased, parameters dropped."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def is_manifest_media_type(media_type: str | None) -> bool:
    """True for every manifest kind this registry accepts or serves (parameters are ignored)."""
    return base_type(media_type) in MANIFEST_MEDIA_TYPES
