"""Secrets in a target's inputs: secret-looking build args and BuildKit secrets.

A secret-looking build arg (``[tool.stagecache] secret-args``) counts in the key through its HMAC
under the store's redaction key (:func:`~stagecache.key.spec.secret_digest`), and is shown and recorded
only as ``<redacted xxxxxxxx>``. A BuildKit secret (``--secret``) counts by its id and the kind of its
source, never by its value, and only when a reached ``RUN --mount=type=secret`` can mount it: BuildKit
assumes a secret does not change the image, and so does the key.

A build arg that a ``RUN`` of the image's own stages sees is written by BuildKit into the image's
history (``RUN |1 API_TOKEN=… /bin/sh -c …``), and so into the store's archive: :func:`history_warning`
says so in one line.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence

from . import dockerfile as df
from .spec import BuildSecret, secret_arg, secret_digest


def masked_args(
    build_args: Mapping[str, str], patterns: Sequence[str], salt: Callable[[], bytes]
) -> dict[str, str]:
    """``build_args`` with each secret-looking value replaced by its HMAC: for digests that are kept
    on disk (a watcher's memo names), which must tell values apart without confirming a guess."""
    return {
        name: f"hmac:{secret_digest(value, salt())}" if secret_arg(name, value, patterns) else value
        for name, value in build_args.items()
    }


def mounted_ids(
    dockerfile: df.Dockerfile, stages: Iterable[df.Stage], build_args: Mapping[str, str]
) -> set[str] | None:
    """The ids of the secrets the stages' ``RUN --mount=type=secret`` can mount; None when one of them
    names its id through a variable (then every secret given counts)."""
    ids: set[str] = set()
    for stage in stages:
        for ins in stage.instructions:
            if ins.cmd != "RUN":
                continue
            for mount in df.parse_mounts(ins):
                if mount.get("type") != "secret":
                    continue
                id_ = mount.get("id") or posixpath.basename(mount.get("target", ""))
                if "$" in id_ or (not mount.get("id") and "$" in mount.get("target", "")):
                    return None
                ids.add(id_)
    return ids


def keyed_secrets(secrets: Iterable[BuildSecret], mounted: set[str] | None) -> list[list[str]]:
    """What the given secrets contribute to the manifest: ``[id, kind]`` for each that a reached step
    can mount (every one when ``mounted`` is None). Never the path, the variable or the value."""
    return sorted([s.id, s.kind] for s in secrets if mounted is None or s.id in mounted)


def history_warning(
    dockerfile: df.Dockerfile, target: df.Stage, build_args: Mapping[str, str], patterns: Sequence[str]
) -> str | None:
    """One line when a secret-looking build arg reaches a ``RUN`` of the image's own stages (the target
    and the stages it is built ``FROM``): BuildKit writes the values of the args a ``RUN`` sees into
    the image's history. A stage only copied from (``COPY --from``) leaves no history in the image."""
    chain = []
    stage: df.Stage | None = target
    while stage is not None and stage not in chain:
        chain.append(stage)
        stage = dockerfile.base_stage(stage, build_args)
    seen: dict[str, int] = {}  # name -> line of the first RUN that sees it
    first_line = None
    for stage in reversed(chain):
        declared: set[str] = set()  # an ARG is in scope in its own stage only
        for ins in stage.instructions:
            if ins.cmd == "ARG":
                declared.update(
                    name
                    for name, _ in df.parse_arg(ins)
                    if name in build_args and secret_arg(name, build_args[name], patterns)
                )
            elif ins.cmd == "RUN":
                for name in sorted(declared - seen.keys()):
                    seen[name] = ins.line
                    first_line = ins.line if first_line is None else first_line
    if not seen:
        return None
    names = ", ".join(sorted(seen))
    if len(seen) > 1:
        what, values, fix = f"build args {names}", "their values end", "them as BuildKit secrets"
    else:
        what, values, fix = f"build arg {names}", "its value ends", "it as a BuildKit secret"
    return (
        f"{dockerfile.path}:{first_line}: RUN sees the secret-looking {what}: {values} up in the image "
        f"history (docker history) and in the store; pass {fix} instead (--secret: compose build.secrets "
        "or [tool.stagecache] secrets, read with RUN --mount=type=secret)"
    )
