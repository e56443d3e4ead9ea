"""The compose files (docker-compose.yml, stacks/langfuse/docker-compose.yml), read as a compose
client reads them (PyYAML, anchors and merge keys, ${...} interpolation), checked against the code:
service names and ports, health checks that ask the real health routes, one worker per queue and one
beat, persistent volumes, no secret with a default, every variable a portal service gets is a setting
documented in .env.example and the settings load from exactly what compose gives, the gateway gets
what the plugin and LiteLLM read and runs the image of requirements.txt's LiteLLM pin, and Langfuse's
stack joins the portal's network. With a compose client installed, `config` accepts every file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
TOP = ROOT / "docker-compose.yml"
LANGFUSE = ROOT / "stacks" / "langfuse" / "docker-compose.yml"
LITELLM_SRC = Path(str(__import__("litellm").__file__)).parent

PORTAL_SERVICES = {"migrate", "web", "worker-sync", "worker-usage", "worker-evals", "beat"}
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|SALT|AUTH)S?$")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
REQUIRED_VALUE = "value-from-the-dot-env-file-0123456789abcdef"  # what a `${NAME:?...}` stands for when .env sets NAME


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def variables(path: Path) -> list[tuple[str, str, str]]:
    """Every ${NAME}, ${NAME:-default}, ${NAME:?message} of a file: (name, operator, rest)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [(m[1], m[2] or "", m[3] or "") for m in VARIABLE.finditer(text)]


def interpolate(value: Any) -> str:
    def one(m: re.Match[str]) -> str:
        return m[3] if (m[2] or "").endswith("-") else REQUIRED_VALUE if (m[2] or "").endswith("?") else ""
    return VARIABLE.sub(one, str(value)).replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolate(value) for name, value in env.items()}


def documented(path: Path) -> set[str]:
    """The names an env example lists (set or commented out as `# NAME=`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), re.M))


def healthcheck(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    assert test, "no health check"
    return " ".join(test) if isinstance(test, list) else str(test)


@pytest.fixture(scope="module")
def top() -> dict[str, Any]:
    return load(TOP)


@pytest.fixture(scope="module")
def services(top: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return top["services"]


def test_the_services_and_what_is_published(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == PORTAL_SERVICES | {"postgres", "redis", "gateway"}
    published = {name: [interpolate(p).split(":")[-1] for p in s.get("ports", [])] for name, s in services.items()}
    assert published == {"web": ["8000"], "gateway": ["4000"], **{n: [] for n in services if n not in
                                                                   ("web", "gateway")}}
    for name in PORTAL_SERVICES:
        assert services[name]["image"] == "llmops-portal:latest" and services[name]["build"] == "."
        assert services[name]["env_file"] == ".env"


def test_one_worker_per_queue_and_exactly_one_beat(services: dict[str, dict[str, Any]]) -> None:
    queues: dict[str, str] = {}
    for name, service in services.items():
        command = [interpolate(c) for c in service.get("command", [])]
        if command[:4] == ["celery", "-A", "portal", "worker"]:
            served = command[command.index("-Q") + 1].split(",")
            assert len(served) == 1, f"{name} serves {served}: one worker per queue"
            queues[served[0]] = name
    assert queues == {"sync": "worker-sync", "usage": "worker-usage", "evals": "worker-evals"}
    beats = [n for n, s in services.items() if s.get("command", [])[:4] == ["celery", "-A", "portal", "beat"]]
    assert beats == ["beat"] and "deploy" not in services["beat"]


def test_the_portal_services_wait_for_the_migration(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert "migrate --noinput" in " ".join(migrate["command"]) and "seed_beat" in " ".join(migrate["command"])
    assert migrate["restart"] == "no"
    for name in PORTAL_SERVICES - {"migrate"}:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name


def test_every_long_running_service_has_a_health_check_that_asks_the_real_thing(
        services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name != "migrate":
            healthcheck(service)
    assert "127.0.0.1:8000/healthz" in healthcheck(services["web"])
    assert "127.0.0.1:4000/portal/health" in healthcheck(services["gateway"])
    assert "pg_isready" in healthcheck(services["postgres"]) and "ping" in healthcheck(services["redis"])
    for worker in ("worker-sync", "worker-usage", "worker-evals"):
        check = interpolate(healthcheck(services[worker]))
        assert "celery -A portal inspect ping -d celery@$HOSTNAME" in check, worker
    assert healthcheck(services["beat"]).endswith("manage.py doctor --only beat")
    # the routes and the command they call exist
    assert re.search(r"""path\(\s*["']healthz""", (ROOT / "portal" / "urls.py").read_text())
    plugin = "".join(p.read_text() for p in (ROOT / "gateway" / "plugin").rglob("*.py"))
    assert '"/portal/health"' in plugin
    assert (ROOT / "portal" / "management" / "commands" / "doctor.py").exists()


def test_beat_runs_the_heartbeat_scheduler_doctor_reads(services: dict[str, dict[str, Any]]) -> None:
    command = services["beat"]["command"]
    scheduler = command[command.index("--scheduler") + 1]
    module, _, attribute = scheduler.partition(":")
    source = ROOT / Path(*module.split(".")).with_suffix(".py")
    assert source.exists() and re.search(rf"^class {attribute}\(", source.read_text(), re.M), scheduler


def test_data_is_kept_in_named_volumes(top: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert "gateway-spool:/var/lib/portal-gateway/spool" in services["gateway"]["volumes"]
    assert environment(services["gateway"])["PORTAL_GATEWAY_SPOOL_DIR"] == "/var/lib/portal-gateway/spool"
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert named == set(top["volumes"])


@pytest.mark.parametrize("path", [TOP, LANGFUSE], ids=["portal", "langfuse"])
def test_no_secret_has_a_default(path: Path) -> None:
    """A secret is required (`${NAME:?...}`: compose refuses to start without it), never defaulted."""
    defaulted = sorted({name for name, op, _ in variables(path) if SECRET_NAME.search(name) and op != ":?"})
    assert defaulted == []
    data = load(path)
    for name, service in data["services"].items():
        for var, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(var) and var not in ("LANGFUSE_S3_EVENT_UPLOAD_ACCESS_KEY_ID",
                                                       "LANGFUSE_S3_MEDIA_UPLOAD_ACCESS_KEY_ID"):
                assert "${" in str(value), f"{name}: {var} is written in the file"


def test_each_portal_service_gets_documented_settings_and_loads_from_them(
        services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """What a portal service is given is documented in .env.example and read by the portal (settings.py,
    or doctor's GATEWAY_URLS, prometheus_client's directory), and the settings load from exactly that (no
    .env file): every required setting is given, none malformed."""
    example = documented(ROOT / ".env.example")
    source = "".join(p.read_text() for package in ("portal", "gateway", "evals") for p in (ROOT / package).rglob("*.py"))
    envs = {name: environment(services[name]) for name in PORTAL_SERVICES}
    assert all(env == envs["web"] for env in envs.values()), "the portal services differ in environment"
    web = envs["web"]
    assert sorted(set(web) - example) == []
    assert sorted({name for name, _, _ in variables(TOP)} - example) == []
    assert sorted(n for n in web if f'"{n}"' not in source) == [], "given, but nothing of the portal reads it"
    assert web["GATEWAY_INTERNAL_URL"] == "http://gateway:4000" and web["REDIS_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in web["DATABASE_URL"]
    assert web["PORTAL_ENCRYPTION_KEYS"] == REQUIRED_VALUE  # .env's value must be a Fernet key: one here
    env = {**web, "PORTAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "PATH": os.environ["PATH"],
           "PORTAL_ENV_FILE": "none", "DJANGO_SETTINGS_MODULE": "portal.settings",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['HOST'], s.DEBUG)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["postgres", "False"]
    assert web["STATIC_MANIFEST"] == "true"  # whitenoise serves the image's hashed files


def test_the_gateway_runs_the_pinned_litellm_image_with_what_the_plugin_reads(
        services: dict[str, dict[str, Any]]) -> None:
    gateway = services["gateway"]
    pin = re.search(r"^litellm(?:\[[^\]]*\])?==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin and gateway["image"] == f"ghcr.io/berriai/litellm:v{pin[1]}"
    env = environment(gateway)
    assert env["LITELLM_WORKER_STARTUP_HOOKS"] == "gateway.plugin:install" and env["PYTHONPATH"] == "/opt/portal"
    assert env["PORTAL_GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    for needed in ("GATEWAY_SEALING_KEY", "LITELLM_MASTER_KEY"):
        assert env[needed] == REQUIRED_VALUE, needed
    # every variable is read by the plugin or by LiteLLM, and nothing else of the portal's is given
    plugin = "".join(p.read_text() for p in (ROOT / "gateway" / "plugin").rglob("*.py"))
    litellm = "".join(p.read_text(errors="replace") for p in LITELLM_SRC.rglob("*.py") if "proxy" in p.parts
                      or p.name in ("_logging.py", "get_model_cost_map.py"))
    unread = [n for n in env if n != "PYTHONPATH" and f'"{n}"' not in plugin and f'"{n}"' not in litellm]
    assert unread == []
    assert not {"DJANGO_SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL"} & set(env)
    # the config's os.environ/ references are given; the mounts are the plugin and that config
    config = (ROOT / "stacks" / "litellm" / "config.yaml").read_text()
    assert set(re.findall(r"os\.environ/([A-Z_]+)", config)) <= set(env)
    mounts = {v.split(":")[0]: v.split(":")[1] for v in gateway["volumes"] if v.startswith("./")}
    assert mounts == {"./stacks/litellm/config.yaml": "/opt/portal/config.yaml",
                      "./gateway/__init__.py": "/opt/portal/gateway/__init__.py",
                      "./gateway/plugin": "/opt/portal/gateway/plugin"}
    assert "/opt/portal/config.yaml" in gateway["command"]


def test_langfuse_joins_the_portals_network_without_clashing_names(top: dict[str, Any]) -> None:
    stack = load(LANGFUSE)
    lf = stack["services"]
    assert set(lf) == {"langfuse-web", "langfuse-worker", "langfuse-postgres", "langfuse-clickhouse",
                       "langfuse-redis", "langfuse-minio"}
    assert not set(lf) & set(top["services"])
    assert lf["langfuse-web"]["image"] == "docker.langfuse.com/langfuse/langfuse:4"
    assert lf["langfuse-worker"]["image"] == "docker.langfuse.com/langfuse/langfuse-worker:4"
    network = stack["networks"]["portal"]
    assert network["external"] is True and network["name"] == top["networks"]["default"]["name"]
    joined = {n for n, s in lf.items() if "portal" in (s.get("networks") or [])}
    assert joined == {"langfuse-web"}
    for service in lf.values():
        healthcheck(service)
    web = environment(lf["langfuse-web"])
    for init in ("ORG_ID", "ORG_NAME", "PROJECT_ID", "PROJECT_NAME", "PROJECT_PUBLIC_KEY", "PROJECT_SECRET_KEY",
                 "USER_EMAIL", "USER_PASSWORD"):
        assert web[f"LANGFUSE_INIT_{init}"], init
    assert web["HOSTNAME"] == "0.0.0.0"
    internal = {"langfuse-postgres:5432", "langfuse-clickhouse:8123", "langfuse-minio:9000"}
    assert all(any(host in v for v in web.values()) for host in internal) and web["REDIS_HOST"] == "langfuse-redis"


def test_langfuse_connect_defaults_reach_the_stack(top: dict[str, Any]) -> None:
    """What `manage.py langfuse_connect` reads from the stack's env file, and the portal may call it."""
    from portal.management.commands import langfuse_connect

    example = ROOT / "stacks" / "langfuse" / ".env.example"
    values = langfuse_connect.read_env_file(example)
    assert values["PORTAL_LANGFUSE_HOST"] == langfuse_connect.DEFAULT_HOST == "http://langfuse-web:3000"
    assert {"LANGFUSE_INIT_PROJECT_PUBLIC_KEY", "LANGFUSE_INIT_PROJECT_SECRET_KEY"} <= set(values)
    allowed = environment(top["services"]["web"])["PORTAL_OUTBOUND_ALLOWED_NETWORKS"].split(",")
    assert "langfuse-web" in allowed
    assert sorted({name for name, _, _ in variables(LANGFUSE)} - set(values)) == []


def test_the_image_leaves_env_files_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", "**/.env", ".venv", "var", ".git"} <= ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER portal" in dockerfile
    collect = next(line for line in dockerfile.replace("\\\n", " ").splitlines() if "collectstatic" in line)
    assert "STATIC_MANIFEST=true" in collect and "PORTAL_ENV_FILE=none" in collect


def test_the_images_user_can_write_the_volumes_mounted_in_portal_services(
        services: dict[str, dict[str, Any]]) -> None:
    """A new named volume takes the ownership of the image's directory: the directory must exist there,
    owned by the unprivileged user the image runs as."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    owned = " ".join(line for line in dockerfile.splitlines() if line.startswith("RUN") and "chown" in line)
    for name in PORTAL_SERVICES:
        for volume in services[name].get("volumes", []):
            target = volume.split(":")[1]
            assert f"mkdir -p {target}" in owned and target in owned.split("chown", 1)[1], (name, volume)


COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(COMPOSE is None, reason="no compose client (apt-get install docker-compose)")
@pytest.mark.parametrize("path", [TOP, LANGFUSE], ids=["portal", "langfuse"])
def test_a_compose_client_accepts_the_file_and_refuses_it_without_the_secrets(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "docker-compose.yml"
    shutil.copy(path, copy)
    (tmp_path / ".env").write_text("")
    refused = subprocess.run([str(COMPOSE), "-f", str(copy), "config", "-q"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert refused.returncode != 0 and "set " in refused.stderr
    secrets = {name for name, op, _ in variables(path) if op == ":?"}
    (tmp_path / ".env").write_text("".join(f"{name}=x{len(name)}\n" for name in sorted(secrets)))
    done = subprocess.run([str(COMPOSE), "-f", str(copy), "config", "-q"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
