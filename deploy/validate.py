#!/usr/bin/env python3
"""Offline checks of everything under deploy/ and of docker-compose.yml.

- docker-compose.yml parses and resolves: `docker-compose config` (Debian's docker-compose, when
  installed) and our own checks (every mounted file exists, every healthy-dependency has a
  healthcheck, every named volume is declared, variables resolve from .env.example).
- Kubernetes: the base and the production overlay are rendered the way kustomize renders them
  (resources, labels, namespace, images, replicas, strategic-merge patches: what these files use)
  and every built-in resource is validated against the Kubernetes schemas (kubernetes-validate,
  strict); the operators' custom resources against their own schemas (deploy/k8s/crds/), with
  unknown fields reported as the API server's structural validation does; every reference between
  objects (probe ports, Service and ServiceMonitor selectors, cluster references, HPA targets,
  Secret keys) resolves.
- The topology of docker compose (its mounted definitions) and of Kubernetes (Messaging Topology
  Operator resources) equals deploy/rabbitmq/definitions.json.
- The Grafana dashboard parses and queries only metrics that exist.
- The deploy page (docs/deploy.md) names every URL and credential a newcomer to compose needs.

Exit 0 when all hold; otherwise every problem is printed and the exit code is 1.
Needs: PyYAML and kubernetes-validate (pip install pyyaml kubernetes-validate).
"""
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

try:
    import kubernetes_validate
except ImportError:  # reported below, with the other problems
    kubernetes_validate = None

# COUNTERSIGN_DEPLOY_ROOT: a copy of the repository's files to validate instead (the mutation
# test injects mistakes into such a copy).
ROOT = Path(os.environ.get("COUNTERSIGN_DEPLOY_ROOT") or Path(__file__).resolve().parent.parent)
KUBERNETES_VERSION = "1.31.0"
# Kinds that run pods from a template (and may be scaled by an HPA or kustomize's replicas).
WORKLOADS = ("Deployment", "StatefulSet")
# Where the ingester's spool is when the configuration does not say (IngesterConfig's default).
DEFAULT_SPOOL_DIR = "./data/spool"
# IngesterConfig's and WorkerConfig's defaults, for what a countersign.toml leaves out.
DEFAULTS = {"ingester.shutdown_timeout": "30s", "ingester.keep_alive": "5s",
            "ingester.max_body_bytes": 64 * 1024 * 1024, "worker.prefetch": 256}
# After the shutdown deadline the ingester takes up to 3 s to close its broker connection
# (startup::CLOSE_MARGIN); 2 s more for the process to exit and be reaped.
SHUTDOWN_MARGIN_S = 5
# ingress-nginx's upstream-keepalive-timeout (its default; a controller-wide setting): how long
# nginx keeps an idle connection to the ingester for reuse. The ingester's keep_alive must be
# longer, or nginx reuses connections the ingester just closed and the provider gets a 502.
INGRESS_UPSTREAM_KEEPALIVE_S = 60
# The ingester recovers its spool before its ports bind: 2.3 s for a full 1 GiB spool measured
# warm here, tens of seconds on a throttled cloud volume. Its startup probe allows at least this.
INGESTER_STARTUP_BUDGET_S = 120
problems = []


def problem(text):
    problems.append(text)


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- docker compose -----------------------------------------------------------------------

def env_defaults():
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def interpolate(value, env):
    """${VAR}, ${VAR:-default}, ${VAR-default} as compose resolves them."""
    def replace(match):
        name, default = match.group(1), match.group(3)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problem(f"docker-compose.yml: ${{{name}}} has no value and no default")
        return ""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", replace, value)


def resolve(node, env):
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def check_compose():
    env = env_defaults()
    compose = resolve(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), env)
    services = compose.get("services", {})
    for name in ["rabbitmq", "postgres", "ingester", "worker", "prometheus", "grafana"]:
        if name not in services:
            problem(f"docker-compose.yml: no service {name}")
    declared_volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        if not (service.get("image") or service.get("build")):
            problem(f"compose service {name}: neither image nor build")
        build = service.get("build")
        if isinstance(build, dict) and not (ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).exists():
            problem(f"compose service {name}: Dockerfile {build.get('dockerfile')} not found")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(("./", "/")):
                if not (ROOT / source).exists():
                    problem(f"compose service {name}: mounted {source} does not exist")
            elif source not in declared_volumes:
                problem(f"compose service {name}: volume {source} is not declared")
        depends = service.get("depends_on", {})
        if isinstance(depends, dict):
            for dependency, rule in depends.items():
                if dependency not in services:
                    problem(f"compose service {name}: depends on unknown {dependency}")
                elif rule.get("condition") == "service_healthy" and "healthcheck" not in services[dependency]:
                    problem(f"compose service {name}: waits for {dependency} to be healthy, which has no healthcheck")
        for port in service.get("ports", []):
            if not re.fullmatch(r"127\.0\.0\.1:\d+:\d+", str(port)):
                problem(f"compose service {name}: port {port!r} is not 127.0.0.1:host:container (development defaults stay on this machine)")
            elif port.split(":")[1] in ("5672", "5432"):
                problem(f"compose service {name}: port {port!r} takes a local RabbitMQ's or PostgreSQL's port")
    for name in ["rabbitmq", "postgres", "ingester", "worker"]:
        if name in services and "healthcheck" not in services[name]:
            problem(f"compose service {name}: no healthcheck")
    ingester = services.get("ingester", {})
    compose_config = (ROOT / "deploy/compose/countersign.toml").read_text()
    if ingester:
        deadline = setting(compose_config, "ingester.shutdown_timeout")
        grace = seconds(ingester.get("stop_grace_period", "10s"))
        if grace < deadline + SHUTDOWN_MARGIN_S:
            problem(f"compose service ingester: stop_grace_period {grace:g} s is below ingester.shutdown_timeout ({deadline:g} s) + {SHUTDOWN_MARGIN_S} s: docker kills it mid-shutdown")
    directory = spool_dir(compose_config)
    if directory is not None and ingester:
        mounts = [(v.split(":")[1], v.split(":")[0]) for v in ingester.get("volumes", []) if isinstance(v, str) and ":" in v]
        volume = mount_of(directory, mounts)
        if volume is None or volume.startswith(("./", "/")) or volume not in declared_volumes:
            problem(f"compose service ingester: the spool ({directory}) is not on a named volume: webhooks answered 200 while RabbitMQ was away would die with the container")

    if shutil.which("docker-compose"):
        for extra in [[], ["-f", str(ROOT / "deploy/local-bases/compose.override.yml")]]:
            result = subprocess.run(
                ["docker-compose", "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                 *extra, "--profile", "monitoring", "config", "--quiet"],
                capture_output=True, text=True, env={**os.environ, **env},
            )
            if result.returncode != 0:
                problem(f"docker-compose config {' '.join(extra)}: {result.stderr.strip()}")
            else:
                print(f"docker-compose config {'with the local bases' if extra else ''}: ok")
    else:
        print("docker-compose not installed: its own check skipped (apt-get install docker-compose)")
    return compose


def check_cluster_compose():
    """deploy/cluster/docker-compose.yml: three nodes, its mounts exist, the ports docs/deploy.md names."""
    path = ROOT / "deploy/cluster/docker-compose.yml"
    compose = resolve(yaml.safe_load(path.read_text()), {})
    services = compose.get("services", {})
    page = (ROOT / "docs/deploy.md").read_text()
    for n in (1, 2, 3):
        service = services.get(f"rabbitmq-{n}")
        if service is None:
            problem(f"deploy/cluster/docker-compose.yml: no service rabbitmq-{n}")
            continue
        if service.get("hostname") != f"rabbitmq-{n}":
            problem(f"deploy/cluster/docker-compose.yml: rabbitmq-{n}'s hostname is not rabbitmq-{n} (its node name, listed in rabbitmq.conf)")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(("./", "../")) and not (path.parent / source).exists():
                problem(f"deploy/cluster/docker-compose.yml: rabbitmq-{n} mounts {source}, which does not exist")
        ports = set(service.get("ports", []))
        for port in (f"127.0.0.1:570{n}:5672", f"127.0.0.1:1570{n}:15672"):
            if port not in ports:
                problem(f"deploy/cluster/docker-compose.yml: rabbitmq-{n} does not publish {port} (the ports docs/deploy.md names)")
    for needed in ["127.0.0.1:570*n*", "http://localhost:1570*n*"]:
        if needed not in page:
            problem(f"docs/deploy.md: the cluster's ports ({needed!r}) are not named")
    listed = [v for k, v in conf_settings((ROOT / "deploy/cluster/rabbitmq.conf").read_text()).items()
              if k.startswith("cluster_formation.classic_config.nodes.")]
    if sorted(listed) != [f"rabbit@rabbitmq-{n}" for n in (1, 2, 3)]:
        problem(f"deploy/cluster/rabbitmq.conf: classic_config lists {listed}, not the three services")
    if shutil.which("docker-compose"):
        result = subprocess.run(["docker-compose", "-f", str(path), "config", "--quiet"], capture_output=True, text=True)
        if result.returncode != 0:
            problem(f"docker-compose config (cluster): {result.stderr.strip()}")
        else:
            print("docker-compose config (cluster): ok")


# --- kustomize, as far as these files use it ---------------------------------------------

def merge(base, patch):
    """Strategic merge: maps deep-merged, lists of named maps merged by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        out = [dict(i) for i in base]
        for item in patch:
            match = next((i for i, b in enumerate(out) if b["name"] == item["name"]), None)
            if match is None:
                out.append(item)
            else:
                out[match] = merge(out[match], item)
        return out
    return patch


def render(directory):
    """The kustomization as the cluster would get it: `kubectl kustomize` where kubectl is
    installed (the test command installs it), else this file's own renderer of the subset these
    manifests use."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return render_subset(directory)
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        problem(f"kubectl kustomize {directory.relative_to(ROOT)}: {result.stderr.strip()}")
        return []
    RENDERED_BY.add("kubectl kustomize")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


RENDERED_BY = set()


def render_subset(directory):
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "labels", "namespace", "images", "replicas", "patches", "configMapGenerator"}
    for key in set(kustomization) - known:
        problem(f"{directory}: kustomization field {key} is not handled by this renderer")
    docs = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs += render_subset(path)
        elif path.exists():
            docs += load_yaml_docs(path)
        else:
            problem(f"{directory}: resource {resource} not found")
    # A generated ConfigMap's name carries a hash of its data (kustomize's own hash differs; what
    # matters here is that references follow the name).
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in generator.get("files", [])}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        generated = f"{generator['name']}-{digest}"
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generated}, "data": data})
        for doc in docs:
            for volume in doc.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
                if lookup(volume, "configMap.name") == generator["name"]:
                    volume["configMap"]["name"] = generated
    for entry in kustomization.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for patch in kustomization.get("patches", []):
        for patch_doc in load_yaml_docs(directory / patch["path"]):
            targets = [i for i, d in enumerate(docs) if d["kind"] == patch_doc["kind"] and d["metadata"]["name"] == patch_doc["metadata"]["name"]]
            if not targets:
                problem(f"{directory}: patch for {patch_doc['kind']}/{patch_doc['metadata']['name']} matches nothing")
            for i in targets:
                docs[i] = merge(docs[i], patch_doc)
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name = container["image"].rsplit(":", 1)[0]
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    for replica in kustomization.get("replicas", []):
        matched = [d for d in docs if d["kind"] in WORKLOADS and d["metadata"]["name"] == replica["name"]]
        if not matched:
            problem(f"{directory}: replicas for {replica['name']} match no Deployment or StatefulSet")
        for doc in matched:
            doc["spec"]["replicas"] = replica["count"]
    if "namespace" in kustomization:
        for doc in docs:
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def crd_schemas():
    """openAPIV3Schema by (apiVersion, kind), from deploy/k8s/crds/<Kind>.<group>.<version>.json."""
    schemas = {}
    for path in sorted((ROOT / "deploy/k8s/crds").glob("*.json")):
        kind, rest = path.stem.split(".", 1)
        group, version = rest.rsplit(".", 1)
        schemas[(f"{group}/{version}", kind)] = json.loads(path.read_text())
    return schemas


JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def check_structural(value, schema, where):
    """The API server's structural validation, as far as these schemas use it: types (with
    int-or-string), enums, patterns, required fields, bounds — and unknown fields, which the
    server prunes or (strict) rejects unless the node preserves them."""
    if value is None and schema.get("nullable"):
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            problem(f"{where}: {value!r} is neither an integer nor a string")
        return
    kind = schema.get("type")
    if kind in JSON_TYPES:
        if not isinstance(value, JSON_TYPES[kind]):
            problem(f"{where}: {value!r} is not of type {kind}")
            return
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            problem(f"{where}: {value!r} is not an integer")
            return
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem(f"{where}: {value!r} is not a number")
            return
    if "enum" in schema and value not in schema["enum"]:
        problem(f"{where}: {value!r} is not one of {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        problem(f"{where}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        problem(f"{where}: {value!r} is below {schema['minimum']}")
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        problem(f"{where}: {value!r} is above {schema['maximum']}")
    if isinstance(value, dict):
        for required in schema.get("required", []):
            if required not in value:
                problem(f"{where}: {required} is required")
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                check_structural(item, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                check_structural(item, extra, f"{where}.{key}")
            elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                problem(f"{where}: unknown field {key!r}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            check_structural(item, schema["items"], f"{where}[{index}]")


def lookup(doc, dotted):
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_kubernetes(name, docs):
    names = set()
    for doc in docs:
        where = f"k8s {name}: {doc.get('kind')}/{lookup(doc, 'metadata.name')}"
        key = (doc.get("kind"), lookup(doc, "metadata.name"))
        if key in names:
            problem(f"{where}: defined twice")
        names.add(key)
        schema = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        if schema is not None:
            check_structural(doc, schema, where)
            continue
        if doc.get("apiVersion", "").split("/")[0].endswith((".com", ".io")) and "k8s.io" not in doc.get("apiVersion", ""):
            problem(f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in deploy/k8s/crds/")
            continue
        if kubernetes_validate is None:
            continue
        try:
            kubernetes_validate.validate(copy.deepcopy(doc), KUBERNETES_VERSION, strict=True)
        except Exception as error:  # ValidationError, SchemaNotFoundError, InvalidSchemaError
            message = getattr(error, "message", str(error))
            problem(f"{where}: {message}")
    check_references(name, docs)
    deployments = [d for d in docs if d["kind"] in WORKLOADS]
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        pod_security = spec.get("securityContext", {})
        for container in spec["containers"]:
            where = f"k8s {name}: {deployment['kind']}/{deployment['metadata']['name']} container {container['name']}"
            security = container.get("securityContext", {})
            if not (pod_security.get("runAsNonRoot") and security.get("readOnlyRootFilesystem")):
                problem(f"{where}: must run as non-root with a read-only root filesystem")
            for probe in ["readinessProbe", "livenessProbe"]:
                if probe not in container:
                    problem(f"{where}: no {probe}")
            if "resources" not in container:
                problem(f"{where}: no resources")
    return docs


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selects(label_selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against labels; empty selects nothing
    here (an empty ServiceMonitor selector is a mistake, not a wish for every Service)."""
    match_labels = label_selector.get("matchLabels") or {}
    expressions = label_selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expression in expressions:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def check_references(name, docs):
    """Every reference between objects resolves: probes name ports their container opens,
    Services and ServiceMonitors select something, cluster references name a cluster, HPAs name
    a Deployment that leaves its count to them, env vars name keys the documented Secret has."""
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    clusters = {d["metadata"]["name"] for d in by_kind.get("RabbitmqCluster", [])}
    for doc in docs:
        reference = lookup(doc, "spec.rabbitmqClusterReference.name")
        if doc["apiVersion"].startswith("rabbitmq.com/") and doc["kind"] != "RabbitmqCluster" and reference not in clusters:
            problem(f"k8s {name}: {doc['kind']}/{doc['metadata']['name']}: rabbitmqClusterReference {reference!r} names no RabbitmqCluster")
    # The client Service the Cluster Operator creates for each RabbitmqCluster (labels and port
    # names as the operator sets them), so that references to it resolve like any other.
    for cluster in by_kind.get("RabbitmqCluster", []):
        cluster_name = cluster["metadata"]["name"]
        by_kind.setdefault("Service", []).append({
            "kind": "Service",
            "metadata": {"name": cluster_name, "labels": {
                "app.kubernetes.io/name": cluster_name, "app.kubernetes.io/component": "rabbitmq",
                "app.kubernetes.io/part-of": "rabbitmq"}},
            "spec": {"selector": None, "ports": [
                {"name": "amqp", "port": 5672}, {"name": "management", "port": 15672},
                {"name": "prometheus", "port": 15692}]},
        })
    pods = [(d, d["spec"]["template"]) for kind in WORKLOADS for d in by_kind.get(kind, [])]
    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector", {})
        if selector is None:
            continue  # made by an operator, selecting the operator's own pods
        if not any(matches(selector, t["metadata"].get("labels", {})) for _, t in pods):
            problem(f"k8s {name}: Service/{service['metadata']['name']}: selector {selector} matches no pod template")
    for monitor in by_kind.get("ServiceMonitor", []):
        selector = monitor["spec"].get("selector") or {}
        selected = [s for s in by_kind.get("Service", []) if selects(selector, s["metadata"].get("labels", {}))]
        if not selected:
            problem(f"k8s {name}: ServiceMonitor/{monitor['metadata']['name']}: selector {selector} matches no Service")
        for endpoint in monitor["spec"].get("endpoints", []):
            if "port" in endpoint and not any(endpoint["port"] == p.get("name") for s in selected for p in s["spec"].get("ports", [])):
                problem(f"k8s {name}: ServiceMonitor/{monitor['metadata']['name']}: port {endpoint['port']!r} is no port of the selected Services")
    # The dashboard's queue depths need RabbitMQ scraped with per-queue series.
    for cluster in by_kind.get("RabbitmqCluster", []):
        cluster_name = cluster["metadata"]["name"]
        per_object_config = "prometheus.return_per_object_metrics = true" in (lookup(cluster, "spec.rabbitmq.additionalConfig") or "")
        endpoints = [
            endpoint
            for monitor in by_kind.get("ServiceMonitor", [])
            if selects(monitor["spec"].get("selector") or {}, {"app.kubernetes.io/name": cluster_name, "app.kubernetes.io/component": "rabbitmq", "app.kubernetes.io/part-of": "rabbitmq"})
            for endpoint in monitor["spec"].get("endpoints", [])
            if endpoint.get("port") == "prometheus"
        ]
        if not endpoints:
            problem(f"k8s {name}: nothing scrapes RabbitmqCluster/{cluster_name} (a ServiceMonitor on its Service's port 'prometheus')")
        elif not per_object_config and not any(e.get("path") == "/metrics/per-object" for e in endpoints):
            problem(f"k8s {name}: RabbitmqCluster/{cluster_name} is scraped without per-object metrics (path /metrics/per-object, or prometheus.return_per_object_metrics = true): queue depths have no queue label")
    # The tested cluster's settings (deploy/cluster/rabbitmq.conf) but peer discovery and the
    # definitions import, which the operator and the topology resources do their own way.
    tested = cluster_settings()
    for cluster in by_kind.get("RabbitmqCluster", []):
        cluster_name = cluster["metadata"]["name"]
        given = conf_settings(lookup(cluster, "spec.rabbitmq.additionalConfig") or "")
        for key, value in tested.items():
            if given.get(key) != value:
                problem(f"k8s {name}: RabbitmqCluster/{cluster_name}: {key} is {given.get(key)!r}, the tested cluster's (deploy/cluster/rabbitmq.conf) is {value!r}")
        if (cluster["spec"].get("replicas") or 1) != 3:
            problem(f"k8s {name}: RabbitmqCluster/{cluster_name}: replicas {cluster['spec'].get('replicas')}, the tested cluster has 3 nodes")
        if cluster["spec"].get("image") != TESTED_RABBITMQ_IMAGE:
            problem(f"k8s {name}: RabbitmqCluster/{cluster_name}: image {cluster['spec'].get('image')!r}, the tested version is {TESTED_RABBITMQ_IMAGE!r}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        deployment = [d for d, _ in pods if d["metadata"]["name"] == target]
        kind = hpa["spec"]["scaleTargetRef"]["kind"]
        if not deployment or deployment[0]["kind"] != kind:
            problem(f"k8s {name}: HorizontalPodAutoscaler/{hpa['metadata']['name']}: targets no {kind} {target!r}")
        elif "replicas" in deployment[0]["spec"]:
            problem(f"k8s {name}: {kind}/{target}: sets replicas while an HPA owns its count (every apply would reset it)")
    secret_keys = set()
    example = ROOT / "deploy/k8s/base/secret.example.yaml"
    for doc in load_yaml_docs(example):
        secret_keys |= set(doc.get("stringData", {})) | set(doc.get("data", {}))
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "countersign-secrets":
            problem(f"k8s {name}: the example Secret is part of the rendered manifests: every apply would overwrite the real one")
    check_spool_volume(name, by_kind, pods)
    check_what_the_numbers_imply(name, by_kind, pods)
    for deployment, template in pods:
        for container in template["spec"]["containers"]:
            where = f"k8s {name}: {deployment['kind']}/{deployment['metadata']['name']} container {container['name']}"
            ports = {p.get("name") for p in container.get("ports", [])} | {p["containerPort"] for p in container.get("ports", [])}
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"]:
                handler = container.get(probe, {})
                port = lookup(handler, "httpGet.port") or lookup(handler, "tcpSocket.port")
                if port is not None and port not in ports:
                    problem(f"{where}: {probe} port {port!r} is not a port the container opens")
            for env in container.get("env", []):
                ref = lookup(env, "valueFrom.secretKeyRef")
                if ref and ref.get("name") == "countersign-secrets" and ref.get("key") not in secret_keys:
                    problem(f"{where}: env {env['name']} uses key {ref.get('key')!r}, which secret.example.yaml does not document")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    rules = by_kind.get("PrometheusRule", [])
    if not rules:
        problem(f"k8s {name}: no PrometheusRule: the alerts of deploy/prometheus/alerts.yml are not loaded")
    for rule in rules:
        if lookup(rule, "spec.groups") != alerts.get("groups"):
            problem(f"k8s {name}: PrometheusRule/{rule['metadata']['name']}: its groups differ from deploy/prometheus/alerts.yml's (copy them)")
    selected_by = {(d["kind"], d["metadata"]["name"]): lookup(d, "metadata.labels.release") for d in rules + by_kind.get("ServiceMonitor", [])}
    if None in selected_by.values() or len(set(selected_by.values())) > 1:
        problem(f"k8s {name}: ServiceMonitors and PrometheusRules must all carry the label release that your Prometheus selects them by (kube-prometheus-stack: its release's name), the same: {selected_by}")
    # The binaries' RabbitMQ user: their own names (amqp.prefix) and the default exchange, nothing
    # else; never the operator's administrator.
    config = next((c for c in by_kind.get("ConfigMap", []) if "countersign.toml" in c.get("data", {})), None)
    prefix = tomllib.loads(config["data"]["countersign.toml"]).get("amqp", {}).get("prefix", "countersign") if config else "countersign"
    own = f"^{re.escape(prefix)}\\."
    expected = {"configure": own, "write": f"^({re.escape(prefix)}\\..*|amq\\.default)$", "read": own}
    permissions = [p for p in by_kind.get("Permission", []) if lookup(p, "spec.userReference.name") == "countersign-app"]
    if [lookup(p, "spec.permissions") for p in permissions] != [expected]:
        problem(f"k8s {name}: the Permission of user countersign-app must be {expected} (what the binaries need, tested), got {[lookup(p, 'spec.permissions') for p in permissions]}")
    for deployment, template in pods:
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if lookup(env, "valueFrom.secretKeyRef.name") == "countersign-rabbitmq-default-user":
                    problem(f"k8s {name}: {deployment['kind']}/{deployment['metadata']['name']}: {env['name']} comes from the operator's default user, an administrator of the whole broker")
    for queue in by_kind.get("Queue", []):
        if lookup(queue, "spec.deletionPolicy") != "retain":
            problem(f"k8s {name}: Queue/{queue['metadata']['name']}: deletionPolicy must be retain (deleting the resource would delete the queue and its events)")


# The RabbitMQ the suite tests: deploy/local-bases builds Debian 13's 4.0.5.
TESTED_RABBITMQ_IMAGE = "rabbitmq:4.0.5-management"


def conf_settings(text):
    """`key = value` lines of a rabbitmq.conf (sysctl format), comments and blanks skipped."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def cluster_settings():
    text = (ROOT / "deploy/cluster/rabbitmq.conf").read_text()
    return {k: v for k, v in conf_settings(text).items() if not k.startswith(("cluster_formation.", "definitions."))}


def spool_dir(config_text):
    """The ingester's spool directory in a countersign.toml, or None when the spool is off."""
    spool = tomllib.loads(config_text).get("ingester", {}).get("spool", {})
    if spool.get("enabled", True) is False:
        return None
    return spool.get("dir", DEFAULT_SPOOL_DIR)


def seconds(text):
    """A duration as humantime writes them ("30s", "1m 30s", "500ms", "2h"), or a number of
    seconds, in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", str(text))
    if not parts or re.sub(r"[\d.\s]|ms|s|m|h", "", str(text)):
        problem(f"cannot read the duration {text!r}")
        return 0.0
    return sum(float(n) * units[u] for n, u in parts)


def setting(config_text, dotted):
    """A setting of a countersign.toml, durations in seconds, with the binaries' default."""
    node = tomllib.loads(config_text)
    for key in dotted.split("."):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    value = DEFAULTS[dotted] if node == {} else node
    return seconds(value) if dotted.endswith(("_timeout", "keep_alive")) else value


def largest_body(config_text):
    """The largest body a message can carry: ingester.max_body_bytes or a source's own."""
    sources = tomllib.loads(config_text).get("sources", [])
    return max([setting(config_text, "ingester.max_body_bytes")] + [s["max_body_bytes"] for s in sources if "max_body_bytes" in s])


def secret_files(config_text, role):
    """The files under /etc/countersign/secrets/ that `role` reads, as named in a countersign.toml
    (`file:` references): the ingester the sources' secrets, the worker its read-API tokens and
    the sources' API credentials."""
    config = tomllib.loads(config_text)
    if role == "ingester":
        references = [r for s in config.get("sources", []) for r in s.get("secrets", [])]
    else:
        references = list(config.get("worker", {}).get("api_tokens", []))
        references += [s["api"]["credentials"] for s in config.get("sources", []) if "credentials" in s.get("api", {})]
    prefix = "file:/etc/countersign/secrets/"
    return {r[len(prefix):] for r in references if isinstance(r, str) and r.startswith(prefix)}


def quantity(text):
    """A Kubernetes memory quantity in bytes ("2Gi", "512Mi", "1G")."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    if not match:
        problem(f"cannot read the quantity {text!r}")
        return 0
    factor = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    return int(match.group(1)) * factor[match.group(2)]


def check_what_the_numbers_imply(name, by_kind, pods):
    """Where the configuration and the manifests must agree, from issue 28's review: a grace period
    that fits the shutdown deadline, configuration that reaches running pods, claims that bind,
    replicas spread out, a worker whose messages in hand fit its memory, an ingester that does not
    close connections the ingress reuses, start-up that liveness does not cut short."""
    config = next((c for c in by_kind.get("ConfigMap", []) if "countersign.toml" in c.get("data", {})), None)
    text = config["data"]["countersign.toml"] if config else ""
    for workload, template in pods:
        spec = template["spec"]
        kind_name = f"{workload['kind']}/{workload['metadata']['name']}"
        where = f"k8s {name}: {kind_name}"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        labels = template["metadata"].get("labels", {})
        spread = [c for c in spec.get("topologySpreadConstraints", []) if selects(c.get("labelSelector", {}), labels)]
        if not spread:
            problem(f"{where}: no topologySpreadConstraints selecting its own pods: every replica may land on one node or zone")
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})
                if mount.get("subPath") and ("configMap" in volume or "secret" in volume):
                    problem(f"{where}: {mount['mountPath']} is a subPath mount of {mount['name']}: it never sees a change (mount the directory)")
            if "startupProbe" not in container:
                problem(f"{where}: container {container['name']} has no startupProbe: liveness may kill it while it starts")
        if text and "ingester" in workload["metadata"]["name"]:
            container = spec["containers"][0]
            pre_stop = lookup(container, "lifecycle.preStop.exec.command") or []
            pause = float(pre_stop[1]) if len(pre_stop) == 2 and pre_stop[0] == "sleep" else 0.0
            deadline = setting(text, "ingester.shutdown_timeout")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < pause + deadline + SHUTDOWN_MARGIN_S:
                problem(f"{where}: terminationGracePeriodSeconds {grace} is below preStop {pause:g} s + ingester.shutdown_timeout {deadline:g} s + {SHUTDOWN_MARGIN_S} s: the kubelet kills it mid-shutdown")
            probe = container.get("startupProbe", {})
            budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
            if probe and budget < INGESTER_STARTUP_BUDGET_S:
                problem(f"{where}: the startupProbe allows {budget} s, below the {INGESTER_STARTUP_BUDGET_S} s a full spool's recovery may take on a slow volume")
            if by_kind.get("Ingress") and setting(text, "ingester.keep_alive") <= INGRESS_UPSTREAM_KEEPALIVE_S:
                problem(f"{where}: ingester.keep_alive {setting(text, 'ingester.keep_alive'):g} s is not above the ingress's upstream keep-alive ({INGRESS_UPSTREAM_KEEPALIVE_S} s): nginx reuses connections the ingester closed (502)")
        if text and "worker" in workload["metadata"]["name"]:
            limit = lookup(spec["containers"][0], "resources.limits.memory")
            in_hand = setting(text, "worker.prefetch") * largest_body(text)
            if limit is None or in_hand > quantity(limit) / 2:
                problem(f"{where}: worker.prefetch x the largest body ({in_hand / 2**20:g} MiB) is over half the memory limit {limit}: a few large documents in hand and the worker is OOMKilled, again and again")
        # Least privilege: each binary gets the Secret's keys its own role reads (the ingester the
        # sources' keys, the worker the read API's tokens and the providers' API credentials).
        role = "ingester" if "ingester" in workload["metadata"]["name"] else "worker"
        wanted = secret_files(text, role) if text else set()
        for volume in spec.get("volumes", []):
            if lookup(volume, "secret.secretName") != "countersign-secrets":
                continue
            items = lookup(volume, "secret.items")
            given = {i["path"] for i in items or []}
            if items is None:
                problem(f"{where}: mounts all of countersign-secrets (no items): the {role} gets the other binary's secrets too")
            elif given != wanted:
                problem(f"{where}: mounts countersign-secrets items {sorted(given)}, but its configuration reads {sorted(wanted)}")
    for ingress in by_kind.get("Ingress", []):
        annotations = lookup(ingress, "metadata.annotations") or {}
        where = f"k8s {name}: Ingress/{ingress['metadata']['name']}"
        if annotations.get("nginx.ingress.kubernetes.io/enable-access-log") != "false":
            problem(f"{where}: access logs on: /webhooks/{{source}}/{{token}} would write URL tokens into them")
        for limit in ["limit-connections", "limit-rps"]:
            if f"nginx.ingress.kubernetes.io/{limit}" not in annotations:
                problem(f"{where}: no nginx.ingress.kubernetes.io/{limit}: one client may take every connection")
    if by_kind.get("Ingress"):
        for workload in by_kind.get("StatefulSet", []):
            for template in workload["spec"].get("volumeClaimTemplates", []):
                if not lookup(template, "spec.storageClassName"):
                    problem(f"k8s {name}: StatefulSet/{workload['metadata']['name']}: claim {template['metadata']['name']} names no storageClassName (Pending without a default class; a claim template cannot change later)")
        for cluster in by_kind.get("RabbitmqCluster", []):
            if not lookup(cluster, "spec.persistence.storageClassName"):
                problem(f"k8s {name}: RabbitmqCluster/{cluster['metadata']['name']}: persistence names no storageClassName")


def mount_of(path, mounts):
    """The mount (from `mounts`: (mountPath, volume)) that holds `path`, deepest first."""
    path = path.rstrip("/")
    for mount_path, volume in sorted(mounts, key=lambda m: -len(m[0])):
        if path == mount_path.rstrip("/") or path.startswith(mount_path.rstrip("/") + "/"):
            return volume
    return None


def check_spool_volume(name, by_kind, pods):
    """A 200 given while RabbitMQ is away means "fsync'd to the spool": the ingester's spool
    must be on a PersistentVolumeClaim of its own (a StatefulSet's volumeClaimTemplates), never
    on the container's file system or an emptyDir, which die with the pod."""
    config = next((c for c in by_kind.get("ConfigMap", []) if "countersign.toml" in c.get("data", {})), None)
    if config is None:
        return
    directory = spool_dir(config["data"]["countersign.toml"])
    if directory is None:
        return
    for workload, template in pods:
        for container in template["spec"]["containers"]:
            if container.get("command", [None])[0] != "countersign-ingester":
                continue
            where = f"k8s {name}: {workload['kind']}/{workload['metadata']['name']} container {container['name']}"
            mounts = [(m["mountPath"], m["name"]) for m in container.get("volumeMounts", [])]
            volume = mount_of(directory, mounts)
            claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
            if volume is None:
                problem(f"{where}: the spool ({directory}) is on the container's own file system: webhooks answered 200 while RabbitMQ was away would die with the pod")
            elif volume not in claims:
                problem(f"{where}: the spool ({directory}) is on volume {volume!r}, not a volumeClaimTemplate: it dies with the pod")


# --- topology -----------------------------------------------------------------------------

def definitions():
    return json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())


def topology_of_definitions(defs):
    queues = {q["name"]: (q["durable"], q["auto_delete"], q["arguments"]) for q in defs["queues"]}
    exchanges = {e["name"]: (e["type"], e["durable"], e["auto_delete"]) for e in defs["exchanges"]}
    bindings = sorted((b["source"], b["destination"], b["destination_type"], b["routing_key"]) for b in defs["bindings"])
    policies = {p["name"]: (p["vhost"], p["pattern"], p["apply-to"], p["priority"], p["definition"]) for p in defs.get("policies", [])}
    return exchanges, queues, bindings, policies


def topology_of_kubernetes(docs):
    queues, exchanges, bindings, policies = {}, {}, [], {}
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "Queue":
            arguments = dict(spec.get("arguments", {}))
            arguments["x-queue-type"] = spec["type"]
            queues[spec["name"]] = (spec.get("durable", False), spec.get("autoDelete", False), arguments)
        elif doc["kind"] == "Exchange":
            exchanges[spec["name"]] = (spec.get("type", "direct"), spec.get("durable", False), spec.get("autoDelete", False))
        elif doc["kind"] == "Binding":
            bindings.append((spec["source"], spec["destination"], spec["destinationType"], spec["routingKey"]))
        elif doc["kind"] == "Policy":
            policies[spec["name"]] = (spec.get("vhost", "/"), spec["pattern"], spec.get("applyTo", "all"), spec.get("priority", 0), spec.get("definition", {}))
    return exchanges, queues, sorted(bindings), policies


# A queue's arguments can never be updated (RabbitMQ refuses another declaration, the topology
# operator another spec): they hold only what the design rests on. x-delivery-limit is the
# parking lot's alone ("never drop a parked message"); every other tunable is a Policy's.
STRUCTURAL_QUEUE_ARGUMENTS = {"x-queue-type", "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-dead-letter-strategy", "x-overflow", "x-message-ttl"}


def check_queue_arguments(docs, where, dead_queue):
    for doc in docs:
        if doc["kind"] != "Queue":
            continue
        spec = doc.get("spec", {})
        allowed = STRUCTURAL_QUEUE_ARGUMENTS | ({"x-delivery-limit"} if spec.get("name") == dead_queue else set())
        for key in sorted(set(spec.get("arguments", {})) - allowed):
            problem(f"{where}: Queue/{doc['metadata']['name']}: {key} is a tunable, and a Queue's arguments can never be updated: set it in a Policy ({key.removeprefix('x-')})")


def check_topology(compose, production):
    expected = topology_of_definitions(definitions())
    dead_queues = [name for name in expected[1] if name.endswith(".dead")]
    check_queue_arguments(production, "k8s production", dead_queues[0] if dead_queues else None)
    if topology_of_kubernetes(production) != expected:
        problem(f"k8s topology differs from definitions.json:\n  k8s:         {topology_of_kubernetes(production)}\n  definitions: {expected}")
    rabbitmq = compose["services"]["rabbitmq"]
    conf = (ROOT / "deploy/rabbitmq/rabbitmq.conf").read_text()
    match = re.search(r"^definitions\.local\.path\s*=\s*(\S+)", conf, re.M)
    directory = match.group(1) if match else None
    mounted = {v.split(":")[0]: v.split(":")[1] for v in rabbitmq.get("volumes", []) if v.startswith("./")}
    target = mounted.get("./deploy/rabbitmq/definitions.json", "")
    if not directory or not target.startswith(directory.rstrip("/") + "/"):
        problem(f"compose: deploy/rabbitmq/definitions.json must be mounted into {directory} (rabbitmq.conf), got {target!r}")
    if mounted.get("./deploy/rabbitmq/rabbitmq.conf", "").startswith("/etc/rabbitmq/conf.d/") is False:
        problem("compose: deploy/rabbitmq/rabbitmq.conf must be mounted into /etc/rabbitmq/conf.d/")
    if mounted.get("./deploy/rabbitmq/enabled_plugins") != "/etc/rabbitmq/enabled_plugins":
        problem("compose: deploy/rabbitmq/enabled_plugins must be mounted as /etc/rabbitmq/enabled_plugins")
    for extra, target in mounted.items():
        if target.startswith(f"{directory}/") and extra != "./deploy/rabbitmq/definitions.json":
            extra_defs = json.loads((ROOT / extra).read_text())
            for kind in ["queues", "exchanges", "bindings"]:
                if extra_defs.get(kind):
                    problem(f"compose: {extra} declares {kind}: the topology is definitions.json's alone")
    # RabbitMQ imports the directory file by file in name order and stops at the first error; with
    # definitions configured it creates no default vhost. So every file declares the vhosts it
    # refers to, and none depends on another file having been imported first.
    for source, target in mounted.items():
        if not target.startswith(f"{directory}/"):
            continue
        defs = json.loads((ROOT / source).read_text())
        declared = {v["name"] for v in defs.get("vhosts", [])}
        for kind in ["permissions", "queues", "exchanges", "bindings", "policies"]:
            for item in defs.get(kind, []):
                if item.get("vhost") not in declared:
                    problem(f"compose: {source} uses vhost {item.get('vhost')!r} in {kind} without declaring it (imported alone, RabbitMQ refuses it)")


# --- dashboard and the deploy page -----------------------------------------------------------------

def exported_metrics():
    names = set()
    for source in ["ingester/src/metrics.rs", "worker/src/metrics.rs"]:
        names |= set(re.findall(r'"(countersign_[a-z_]+)"', (ROOT / source).read_text()))
    return names


def check_dashboard():
    dashboard = json.loads((ROOT / "deploy/grafana/countersign.json").read_text())
    known = exported_metrics()
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in ["Webhook requests by outcome", "Request latency (ingester)", "Broker confirm latency", "Queue depths", "Worker rate", "Dead-letter rate by reason", "Spool", "Spool quarantine", "Reconciliation"]:
        if wanted not in titles:
            problem(f"dashboard: no panel {wanted!r}")
    rabbitmq = {line.strip() for line in (ROOT / "deploy/grafana/rabbitmq-metrics.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"\b(countersign_[a-z_]+?)(?:_bucket|_sum|_count)?\b", target["expr"]):
                if metric not in known:
                    problem(f"dashboard panel {panel['title']!r}: {metric} is not exported by the binaries")
            for metric in re.findall(r"\b(rabbitmq_[a-z_]+)\b", target["expr"]):
                if metric not in rabbitmq and re.sub(r"_(bucket|sum|count)$", "", metric) not in rabbitmq:
                    problem(f"dashboard panel {panel['title']!r}: {metric} is not a metric RabbitMQ exports (deploy/grafana/rabbitmq-metrics.txt)")


def check_deploy_page():
    """docs/deploy.md, the whole page: what a newcomer to compose needs to open and log in to."""
    page = (ROOT / "docs/deploy.md").read_text()
    for needed in ["docker compose up", "http://localhost:8080/webhooks/acme", "http://localhost:9090", "http://localhost:8081",
                   "http://localhost:15673", "countersign / countersign", "http://localhost:3000", "admin / admin",
                   "http://localhost:9091", "docker compose exec", "dev-signature-key", "dev-read-token", ".env.example",
                   "deploy/local-bases/build.sh"]:
        if needed not in page:
            problem(f"docs/deploy.md: {needed!r} is not named")


CRD_SCHEMAS = crd_schemas()


def check_drain_job(production):
    """deploy/k8s/drain-spool.yaml, filled in, is a valid Job that runs with what the ingesters
    run with: the same environment (AMQP credentials), the same Secret, the same configuration."""
    path = ROOT / "deploy/k8s/drain-spool-job.yaml"
    text = path.read_text()
    for placeholder in ["SPOOL_CLAIM", "CONFIG_MAP", "IMAGE"]:
        if placeholder not in text:
            problem(f"{path.name}: the placeholder {placeholder} its comment names is not in it")
    job = yaml.safe_load(text.replace("SPOOL_CLAIM", "spool-countersign-ingester-4")
                         .replace("CONFIG_MAP", "countersign-config-abc").replace("IMAGE", "countersign:0.1.0"))
    if kubernetes_validate is not None:
        try:
            kubernetes_validate.validate(copy.deepcopy(job), KUBERNETES_VERSION, strict=True)
        except Exception as error:
            problem(f"{path.name}: {getattr(error, 'message', str(error))}")
    ingester = next((d for d in production if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "countersign-ingester"), None)
    if ingester is None:
        return
    ingester_pod = ingester["spec"]["template"]["spec"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if container.get("env") != ingester_pod["containers"][0].get("env"):
        problem(f"{path.name}: its env differs from the ingester's (AMQP credentials, configuration path)")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for volume in ingester_pod.get("volumes", []):
        if volume["name"] == "secrets" and volumes.get("secrets") != volume:
            problem(f"{path.name}: its secrets volume differs from the ingester's")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    ingester_mounts = {m["name"]: m["mountPath"] for m in ingester_pod["containers"][0].get("volumeMounts", [])}
    for name in ["config", "secrets"]:
        if mounts.get(name) != ingester_mounts.get(name):
            problem(f"{path.name}: {name} is mounted at {mounts.get(name)}, the ingester's at {ingester_mounts.get(name)}")
    command = container.get("command", [])
    spool = mounts.get("spool")
    if command[:3] != ["countersign-ingester", "spool", "--dir"] or command[3:4] != [spool] or "drain" not in command:
        problem(f"{path.name}: the command does not drain the mounted claim ({spool}): {command}")


def main():
    if kubernetes_validate is None:
        problem("kubernetes-validate is not installed (pip install kubernetes-validate)")
    compose = check_compose()
    check_cluster_compose()
    base = check_kubernetes("base", render(ROOT / "deploy/k8s/base"))
    production = check_kubernetes("production", render(ROOT / "deploy/k8s/overlays/production"))
    check_topology(compose, production)
    check_drain_job(production)
    check_dashboard()
    check_deploy_page()
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print(f"- {p}")
        return 1
    renderer = " and ".join(sorted(RENDERED_BY)) or "validate.py's own renderer (kubectl not installed)"
    print(f"deploy: ok (compose: {len(compose['services'])} services; k8s: {len(base)} base and {len(production)} production resources, rendered by {renderer}; topology = definitions.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
