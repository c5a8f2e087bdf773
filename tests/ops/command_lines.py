"""Every tessera-daemon command line the repository ships, read from the files that ship it.

Each :class:`Shipped` is an argv (after the program name), the environment its deployment sets, and where
it came from. A path the deployment names on the target machine (``/etc/tessera/tessera.toml``) is replaced
by the repository file that the deployment installs there: the file named by the unit's ``install`` comment,
the compose volume's host side, the Kubernetes ConfigMap mounted there (written to a temporary directory),
and otherwise the example for the subcommand (``DEPLOYED_CONFIG``).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.ops.catalog import ROOT

PROGRAM = "tessera-daemon"
DEPLOYED_PATH = "/etc/tessera/tessera.toml"
SYSTEMD, COMPOSE, K8S = ROOT / "deploy" / "systemd", ROOT / "deploy" / "compose", ROOT / "deploy" / "kubernetes"
# What docs/operations.md tells an operator to install at /etc/tessera/tessera.toml for each subcommand.
DEPLOYED_CONFIG = {
    "run": SYSTEMD / "tessera.toml.example",
    "config": SYSTEMD / "tessera.toml.example",
    "agent": SYSTEMD / "tessera-split.toml.example",
    "detector": SYSTEMD / "tessera-split.toml.example",
}
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Shipped:
    origin: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    files: dict[str, str] = field(default_factory=dict, compare=False, hash=False)  # path -> text to write

    @property
    def command(self) -> str:
        return next((a for a in self.argv if not a.startswith("-")), "")


def _subcommand(argv: list[str]) -> str:
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--config", "--log-level"):
            skip = True
            continue
        if not a.startswith("-"):
            return a
    return ""


def _map_config(argv: list[str], mapping: dict[str, str]) -> tuple[str, ...]:
    """Replace a deployed --config path by the repository file installed there."""
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a == "--config":
            target = out[i + 1]
            if target in mapping:
                out[i + 1] = mapping[target]
            elif not (ROOT / target).exists() and _subcommand(argv) in DEPLOYED_CONFIG:
                out[i + 1] = str(DEPLOYED_CONFIG[_subcommand(argv)])
    return tuple(out)


def _env(pairs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in pairs.items() if k.startswith("TESSERA_")))


# ------------------------------------------------------------------------------------------- Dockerfile


def _docker_instructions() -> list[tuple[str, str]]:
    out, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        ins = current + line
        current = ""
        word, _, rest = ins.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def image_entrypoint() -> tuple[list[str], list[str], dict[str, str]]:
    """ENTRYPOINT, CMD and TESSERA_* ENV of the image's last stage."""
    ins = _docker_instructions()
    last_from = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    final = ins[last_from:]
    entry = json.loads([a for k, a in final if k == "ENTRYPOINT"][-1])
    cmd = json.loads([a for k, a in final if k == "CMD"][-1])
    env = dict(re.findall(r"(TESSERA_\w+)=(\S+)", " ".join(a for k, a in final if k == "ENV")))
    return entry, cmd, env


def _image_argv(args: list[str], origin: str, extra_env: dict[str, str] | None = None) -> Shipped:
    entry, cmd, env = image_entrypoint()
    argv = [*entry, *(args or cmd)]
    assert PurePosixPath(argv[0]).name == PROGRAM, f"{origin}: the image runs {argv[0]}"
    return Shipped(origin, _map_config(argv[1:], {}), _env(env | (extra_env or {})))


def _docker_run(line: str, origin: str) -> Shipped | None:
    """`docker run [options] tessera-daemon [args]` -> the container's argv."""
    words = shlex.split(line, comments=True)
    if words[:2] != ["docker", "run"] or PROGRAM not in words:
        return None
    image_at = words.index(PROGRAM)
    return _image_argv(words[image_at + 1 :], origin)


# ---------------------------------------------------------------------------------------------- systemd


def _systemd() -> list[Shipped]:
    out = []
    for unit in sorted(SYSTEMD.glob("*.service")):
        text = unit.read_text()
        env: dict[str, str] = {}
        mapping: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("Environment="):
                key, _, value = line[len("Environment=") :].partition("=")
                env[key] = value.replace("%S", "/var/lib").replace("%C", "/var/cache")
            m = re.search(r"install .*?(deploy/\S+) (/etc/\S+)", line)
            if line.startswith("#") and m:
                mapping[m.group(2)] = str(ROOT / m.group(1))
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", text, flags=re.MULTILINE)
        argv = shlex.split(exec_start)
        assert PurePosixPath(argv[0]).name == PROGRAM, f"{unit.name}: ExecStart runs {argv[0]}"
        assert DEPLOYED_PATH in mapping, f"{unit.name}: no install comment for {DEPLOYED_PATH}"
        out.append(Shipped(f"deploy/systemd/{unit.name}", _map_config(argv[1:], mapping), _env(env)))
    return out


# ---------------------------------------------------------------------------------------------- compose


def _compose() -> list[Shipped]:
    spec = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    out = []
    for name, svc in sorted(spec["services"].items()):
        if not str(svc.get("image", "")).startswith(PROGRAM):
            continue
        mapping = {}
        for vol in svc.get("volumes", []):
            host, _, rest = vol.partition(":")
            container = rest.split(":")[0]
            if host.startswith("."):
                mapping[container] = str((COMPOSE / host).resolve())
        env = svc.get("environment", {})
        env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}
        command = svc.get("command", [])
        command = shlex.split(command) if isinstance(command, str) else list(command)
        entry, cmd, image_env = image_entrypoint()
        argv = [*svc.get("entrypoint", entry), *(command or cmd)]
        out.append(
            Shipped(f"deploy/compose/compose.yaml:{name}", _map_config(argv[1:], mapping), _env(image_env | env))
        )
    return out


# ------------------------------------------------------------------------------------------- Kubernetes


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
    return docs


def _kubernetes(tmp: Path) -> list[Shipped]:
    docs = _k8s_docs()
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    out = []
    for doc in docs:
        if doc.get("kind") not in {"DaemonSet", "Deployment", "StatefulSet", "Job", "CronJob"}:
            continue
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            if "tessera-daemon:" not in container["image"]:
                continue
            files: dict[str, str] = {}
            mapping: dict[str, str] = {}
            for mount in container.get("volumeMounts", []):
                cm = volumes[mount["name"]].get("configMap")
                if cm is None:
                    continue
                for key, text in configmaps[cm["name"]].items():
                    local = tmp / f"{cm['name']}-{key}"
                    files[str(local)] = text
                    mapping[f"{mount['mountPath'].rstrip('/')}/{key}"] = str(local)
            entry, cmd, image_env = image_entrypoint()
            argv = [*container.get("command", entry), *container.get("args", [] if "command" in container else cmd)]
            assert PurePosixPath(argv[0]).name == PROGRAM, f"{doc['metadata']['name']}: runs {argv[0]}"
            env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            out.append(
                Shipped(
                    f"deploy/kubernetes:{doc['kind']}/{doc['metadata']['name']}/{container['name']}",
                    _map_config(argv[1:], mapping),
                    _env(image_env | env),
                    files,
                )
            )
    return out


# ----------------------------------------------------------------------------------- comments and docs

_PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$|\[|\.\.\.|<")


def _shell_lines(text: str) -> list[str]:
    """Logical lines of a shell snippet (backslash continuations joined)."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    return lines


def _make_run_argv() -> list[str]:
    """`make run` runs the recipe of the Makefile's run target; $(ARGS) are appended by the caller."""
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.+)$", text, flags=re.MULTILINE)
    assert recipe, "Makefile: no run target"
    words = shlex.split(recipe.group(1))
    assert words[-1] == "$(ARGS)" and PurePosixPath(words[0]).name == PROGRAM, recipe.group(1)
    return words[1:-1]


def _from_shell(line: str, origin: str, own_file: Path | None = None) -> Shipped | None:
    """A shell line that runs the daemon: `tessera-daemon ...`, `VAR=x make run ARGS="..."` or `docker run`."""
    stripped = line.strip().lstrip("#").strip().removeprefix("$ ")
    try:
        words = shlex.split(stripped, comments=True)
    except ValueError:
        return None
    for i, w in enumerate(words):  # the first command of a list or pipeline, without redirections
        if w in {"&&", "||", ";", "|", "&"} or w.startswith((">", "<", "2>")):
            words = words[:i]
            break
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words:
        return None
    if words[:2] == ["docker", "run"]:
        return _docker_run(stripped, origin)
    if words[:2] == ["make", "run"]:
        args = [w for w in words[2:] if not w.startswith("ARGS=")]
        assert not args, f"{origin}: make run with {args}"
        extra = next((shlex.split(w[len("ARGS=") :]) for w in words[2:] if w.startswith("ARGS=")), [])
        return Shipped(origin, _map_config([*_make_run_argv(), *extra], {}), _env(env))
    if PurePosixPath(words[0]).name != PROGRAM or len(words) < 2:
        return None
    if any(_PLACEHOLDER.search(w) for w in words[1:]):
        return None
    mapping = {DEPLOYED_PATH: str(own_file)} if own_file is not None else {}
    return Shipped(origin, _map_config(words[1:], mapping), _env(env))


def _comments() -> list[Shipped]:
    """Command lines in the comments of the Dockerfile, the examples and the shipped TOML files."""
    out = []
    files = [
        ROOT / "Dockerfile",
        *sorted((ROOT / "examples").glob("*.toml")),
        *sorted(SYSTEMD.glob("*.toml.example")),
        *sorted(COMPOSE.glob("*.toml")),
    ]
    for path in files:
        own = path if path.suffix in {".toml", ".example"} else None
        for n, line in enumerate(_shell_lines(path.read_text()), 1):
            if not line.lstrip().startswith("#"):
                continue
            found = _from_shell(line, f"{path.relative_to(ROOT)}:{n}", own)
            if found is None:
                for span in re.findall(r"`([^`]+)`", line):
                    found = _from_shell(span, f"{path.relative_to(ROOT)}:{n}", own)
            if found is not None:
                out.append(found)
    return out


def _docs() -> list[Shipped]:
    """Code blocks (every line) and inline code spans of README.md and docs/*.md that run the daemon."""
    out = []
    for path in DOCS:
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        for block in re.finditer(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
            first = text.count("\n", 0, block.start(1)) + 1
            for n, line in enumerate(_shell_lines(block.group(1))):
                found = _from_shell(line, f"{rel}:{first + n}")
                if found is not None:
                    out.append(found)
        outside = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
        for span in re.findall(r"`([^`\n]+)`", outside):
            found = _from_shell(span, f"{rel} `{span}`")
            if found is not None:
                out.append(found)
    return out


TMP = "{tmp}"  # where the Kubernetes ConfigMaps are written; the test substitutes its tmp_path


def _healthcheck() -> list[Shipped]:
    """The image's HEALTHCHECK command (exec form), with the image's environment."""
    out = []
    for kind, args in _docker_instructions():
        if kind == "HEALTHCHECK" and "CMD" in args:
            argv = json.loads(args.split("CMD", 1)[1].strip())
            assert PurePosixPath(argv[0]).name == PROGRAM, f"HEALTHCHECK runs {argv[0]}"
            out.append(Shipped("Dockerfile HEALTHCHECK", tuple(argv[1:]), _env(image_entrypoint()[2])))
    return out


def shipped() -> list[Shipped]:
    return [
        *_systemd(),
        *_compose(),
        *_kubernetes(Path(TMP)),
        _image_argv([], "Dockerfile CMD"),
        *_healthcheck(),
        *_comments(),
        *_docs(),
    ]


def unique() -> dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], list[Shipped]]:
    """The shipped command lines grouped by (argv, environment): each distinct one runs once."""
    out: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], list[Shipped]] = {}
    for s in shipped():
        out.setdefault((s.argv, s.env), []).append(s)
    return out
