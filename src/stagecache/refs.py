"""Image references and the names stagecache gives images: the one place that spells them.

A key image is tagged ``<repository>:sc-<key hex>``; the other tags a build applies (the compose
``image:``, the commit SHA, ``--tag``) are plain references. Docker's reading of a reference is kept
here: ``name`` means ``name:latest``, and in ``registry:5000/name`` the port is not a tag.
"""

from __future__ import annotations

import re

KEY_TAG_PREFIX = "sc-"
LABEL_PREFIX = "org.stagecache"
KEY_LABEL = f"{LABEL_PREFIX}.key"
TARGET_LABEL = f"{LABEL_PREFIX}.target"


def split_tag(ref: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); no tag means ``latest`` (a registry's port is not a tag)."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def repository_of(image: str) -> str:
    """``repo:tag`` or ``repo@digest`` -> ``repo``."""
    return split_tag(image.split("@", 1)[0])[0]


def qualified(ref: str) -> str:
    """``name`` and ``name:latest`` are one tag, as docker reads them."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


def key_tag(key: str) -> str:
    """The tag a key is kept under in the daemon: ``sc-<hex>``."""
    return KEY_TAG_PREFIX + key.removeprefix("sha256:")


def key_ref(repository: str, key: str) -> str:
    """``<repository>:sc-<hex>``."""
    return f"{repository}:{key_tag(key)}"


def is_key_ref(ref: str) -> bool:
    return split_tag(ref)[1].startswith(KEY_TAG_PREFIX)


def short_key_ref(ref: str) -> str:
    """``repo:sc-0123456789ab``: a key reference cut for a table (12 hex digits of the key)."""
    repository, tag = split_tag(ref)
    return f"{repository}:{tag[: len(KEY_TAG_PREFIX) + 12]}" if tag.startswith(KEY_TAG_PREFIX) else ref


def default_repository(project: str, service: str) -> str:
    """Compose's own default image name for a service without ``image:``."""
    return re.sub(r"[^a-z0-9_.-]", "", f"{project}-{service}".lower()) or "stagecache"


def target_id(repository: str, name: str) -> str:
    """The name a target's build records are kept under."""
    return f"{repository}__{name}"
