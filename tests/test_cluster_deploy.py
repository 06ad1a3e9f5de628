"""Deploy files: the Dockerfile installs the project's pins; the manifests parse and have what they need."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "cluster" / "deploy"


def _pyproject_pin(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.match(rf"^{re.escape(name)}(\[[^\]]*\])?==([\w.]+)$", dep)
        if match:
            return match.group(2)
    raise AssertionError(f"{name} is not pinned with == in pyproject.toml")


def _dockerfile() -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(instruction, argument) pairs with continuations joined, and the ARG defaults."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    args = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    return instructions, args


def _docs(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def test_dockerfile_installs_the_project_with_its_pins():
    instructions, args = _dockerfile()
    words = [word for word, _ in instructions]
    assert words.count("FROM") == 1 and words.index("FROM") <= words.index("RUN")
    known = {"ARG", "FROM", "ENV", "SHELL", "RUN", "WORKDIR", "COPY", "USER", "CMD", "LABEL"}
    assert set(words) <= known, set(words) - known
    assert args["TORCH_VERSION"] == _pyproject_pin("torch")
    assert args["TORCH_VARIANT"] == "cpu"  # CPU by default; CUDA as a build argument
    run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert '"torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu' in run
    assert '"${TORCH_VARIANT}" = "cuda"' in run
    assert 'pip install ".${EXTRAS:+[${EXTRAS}]}"' in run  # the project itself, with its dependency pins
    copied = {rest.split()[0] for word, rest in instructions if word == "COPY"}
    assert {"pyproject.toml", "storage", "cluster", "pipelines"} <= copied
    assert instructions[-1][0] == "CMD" and ("USER", "1000") in instructions


def test_ray_version_is_the_same_everywhere():
    _, args = _dockerfile()
    ray_version = args["RAY_VERSION"]
    spec = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("ray")
    )
    low, high = re.search(r">=([\d.]+),<([\d.]+)", spec).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(ray_version) < as_tuple(high)
    cron = _docs("raycronjob.yaml")[0]
    once = _docs("rayjob.yaml")[0]
    assert cron["spec"]["jobTemplate"]["rayClusterSpec"]["rayVersion"] == ray_version
    assert once["spec"]["rayClusterSpec"]["rayVersion"] == ray_version


def _containers(pod_spec: dict) -> list[dict]:
    return pod_spec["containers"]


def _mounts_config_and_secret(pod_spec: dict, container: dict) -> None:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    config_mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/etc/gexplain"]
    assert config_mounts, "the config must be mounted at /etc/gexplain"
    assert volumes[config_mounts[0]["name"]]["configMap"]["name"] == "gexplain-job"
    assert {"secretRef": {"name": "gexplain-s3"}} in container["envFrom"]


def test_job_config_configmap_holds_a_valid_run_config(tmp_path):
    from gexplain.pipelines.config import parse_config

    configmap, secret = _docs("job-config.yaml")
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "gexplain-job"
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "gexplain-s3"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GEXPLAIN_HOOK_URL"} <= set(secret["stringData"])
    path = tmp_path / "job.toml"
    path.write_text(configmap["data"]["job.toml"])
    cfg = parse_config(path)
    assert cfg.store_url.startswith("s3://") and not cfg.run.out.startswith(("s3://", "gs://"))


def test_kubernetes_cronjob_runs_gexplain_with_mounted_config_and_credentials():
    (cron,) = _docs("cronjob.yaml")
    assert cron["apiVersion"] == "batch/v1" and cron["kind"] == "CronJob"
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = _containers(pod)
    assert container["command"][:3] == ["gexplain", "run", "/etc/gexplain/job.toml"]
    _mounts_config_and_secret(pod, container)


@pytest.mark.parametrize("name", ["raycronjob.yaml", "rayjob.yaml"])
def test_kuberay_manifests_have_the_required_fields(name):
    (doc,) = _docs(name)
    assert doc["apiVersion"] == "ray.io/v1"
    if name == "raycronjob.yaml":
        assert doc["kind"] == "RayCronJob"
        assert len(doc["spec"]["schedule"].split()) == 5
        job = doc["spec"]["jobTemplate"]  # KubeRay >= 1.6: a RayJob spec, no 'spec:' wrapper
        assert "spec" not in job
    else:
        assert doc["kind"] == "RayJob"
        job = doc["spec"]
    assert job["entrypoint"].startswith("gexplain run /etc/gexplain/job.toml --cluster auto --dask ray")
    from gexplain.pipelines.config import ClusterSection  # Dask-on-Ray: normalize and DE on the Ray workers

    assert ClusterSection().override({"address": "auto", "dask_address": "ray"}).dask_address == "ray"
    assert job["shutdownAfterJobFinishes"] is True
    cluster = job["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]["template"]["spec"]
    _mounts_config_and_secret(head, _containers(head)[0])
    assert cluster["workerGroupSpecs"], "at least one worker group"
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and "rayStartParams" in group
        worker = _containers(group["template"]["spec"])[0]
        assert {"secretRef": {"name": "gexplain-s3"}} in worker["envFrom"]
    images = {c["image"] for c in _containers(head)} | {
        _containers(g["template"]["spec"])[0]["image"] for g in cluster["workerGroupSpecs"]
    }
    assert len(images) == 1, "head and workers must run the same image"


def test_ray_launcher_config_passes_rays_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    broken = copy.deepcopy(config)
    broken["available_node_types"]["head"]["not_a_field"] = 1
    with pytest.raises(Exception, match="not_a_field"):
        validate_config(prepare_config(broken))
