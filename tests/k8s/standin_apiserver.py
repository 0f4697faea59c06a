"""A stand-in Kubernetes API server for testing the roles' apply path without a cluster.

This is NOT Kubernetes. It serves just enough of the API over real HTTP for
kubernetes.core (discovery, get, list with label selectors, server-side apply, JSON patch,
create, delete, pod logs) and keeps objects in memory. It imitates the server behaviour
that the roles depend on:

- server-side apply creates or updates an object, bumps resourceVersion only when the
  object changes and metadata.generation only when its spec changes, and honours
  ``dryRun=All`` (check mode) by storing nothing;
- a Job's pod template and a claim's spec are immutable, as on a real server;
- a Deployment without spec.replicas keeps the count it has (an HPA's), defaulting to 1;
- tiny controllers: a Job finishes after one status poll. It is Complete, or Failed with
  a pod log when its name matches ``failing_jobs``. Each Deployment revision gets a
  ReplicaSet with a revision annotation, and becomes available unless its image matches
  ``broken_images``. A VolumeSnapshot is readyToUse at once.

Real admission, validation against OpenAPI schemas, scheduling and storage are out of
scope: the manifests are validated separately with kubernetes-validate.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


@dataclass(frozen=True)
class ResourceType:
    """One served resource type: group ('' for core), version, plural name and kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCE_TYPES = [
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("", "v1", "services", "Service"),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ResourceType("", "v1", "pods", "Pod", subresources=("log", "status")),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("apps", "v1", "deployments", "Deployment", subresources=("status", "scale")),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet"),
    ResourceType("batch", "v1", "jobs", "Job", subresources=("status",)),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress"),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ResourceType("snapshot.storage.k8s.io", "v1", "volumesnapshots", "VolumeSnapshot"),
    ResourceType("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor"),
    ResourceType("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
]

_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

# Server-owned metadata that an apply body never replaces.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp")


class ApiError(Exception):
    """A Kubernetes Status error: HTTP status code, reason and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass
class Request:
    """One request the stand-in served, for ordering assertions in tests."""

    method: str
    kind: str | None
    name: str | None
    namespace: str | None
    dry_run: bool
    content_type: str
    path: str
    query: dict[str, str]


@dataclass
class ClusterState:
    """Objects and test controls of the stand-in, shared by the request threads."""

    failing_jobs: set[str] = field(default_factory=set)
    broken_images: set[str] = field(default_factory=set)
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str | None, str], str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    counter: int = 0

    def next_version(self) -> str:
        self.counter += 1
        return str(self.counter)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            obj
            for (k, ns, _), obj in sorted(self.objects.items(), key=lambda item: str(item[0]))
            if k == kind and (namespace is None or ns == namespace)
        ]

    def writes(self, *, dry_run: bool = False) -> list[Request]:
        """Return the object-changing requests (apply, create, patch, delete) in order."""
        return [
            r for r in self.requests
            if r.method in ("PATCH", "POST", "PUT", "DELETE") and r.dry_run == dry_run and r.kind
        ]


def _matches_selector(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def _apply_json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    result = copy.deepcopy(target)
    for op in operations:
        if op["op"] not in ("replace", "add"):
            raise ApiError(422, "Invalid", f"stand-in supports only add/replace patches, not {op['op']}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(op["value"])
    return result


class StandinCluster:
    """The stand-in API server, listening on 127.0.0.1 with a port from the OS."""

    def __init__(self) -> None:
        self.state = ClusterState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandinCluster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, context: str) -> str:
        """Return a kubeconfig document whose ``context`` points at this stand-in."""
        return yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "standin", "user": "standin"}}],
            "current-context": context,
        })

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output readable; requests are recorded in state.requests

            def do_GET(self) -> None:
                cluster._dispatch(self, "GET")

            def do_PATCH(self) -> None:
                cluster._dispatch(self, "PATCH")

            def do_POST(self) -> None:
                cluster._dispatch(self, "POST")

            def do_PUT(self) -> None:
                cluster._dispatch(self, "PUT")

            def do_DELETE(self) -> None:
                cluster._dispatch(self, "DELETE")

        return Handler

    # HTTP plumbing -------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type", "")
        try:
            status, payload = self._route(method, parsed.path, query, body, content_type)
        except ApiError as exc:
            status, payload = exc.code, {
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": exc.message, "reason": exc.reason, "code": exc.code,
            }
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes,
               content_type: str) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if method == "GET" and path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin"}
        if method == "GET" and parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if method == "GET" and parts == ["apis"]:
            return 200, self._group_list()
        if method == "GET" and (parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis")):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            return 200, self._resource_list(group, version)

        rtype, namespace, name, sub = self._parse_object_path(parts)
        dry_run = query.get("dryRun") == "All"
        with self.state.lock:
            self.state.requests.append(Request(method, rtype.kind, name, namespace, dry_run,
                                               content_type, path, query))
            if method == "GET" and name is None:
                selector = query.get("labelSelector", "")
                items = [o for o in self.state.list(rtype.kind, namespace)
                         if _matches_selector(o["metadata"].get("labels", {}), selector)]
                return 200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version,
                             "metadata": {"resourceVersion": str(self.state.counter)},
                             "items": copy.deepcopy(items)}
            if method == "GET" and sub == "log":
                return 200, self._log(namespace, name, query)
            if method == "GET":
                return 200, copy.deepcopy(self._observe(self._require(rtype, namespace, name)))
            if method == "PATCH" and "apply-patch" in content_type:
                return self._server_side_apply(rtype, namespace, name, yaml.safe_load(body), dry_run)
            if method == "PATCH" and "json-patch" in content_type:
                current = self._require(rtype, namespace, name)
                updated = _apply_json_patch(current, json.loads(body))
                return 200, self._store(rtype, namespace, name, updated, current, dry_run)
            if method == "POST":
                obj = json.loads(body)
                obj_name = obj["metadata"]["name"]
                if self.state.get(rtype.kind, namespace, obj_name):
                    raise ApiError(409, "AlreadyExists", f"{rtype.plural} \"{obj_name}\" already exists")
                return 201, self._store(rtype, namespace, obj_name, obj, None, dry_run)
            if method == "DELETE":
                current = self._require(rtype, namespace, name)
                if not dry_run:
                    del self.state.objects[(rtype.kind, namespace, name)]
                return 200, current
        raise ApiError(405, "MethodNotAllowed", f"stand-in does not serve {method} {path}")

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for rtype in RESOURCE_TYPES:
            if rtype.group:
                groups.setdefault(rtype.group, [])
                if rtype.version not in groups[rtype.group]:
                    groups[rtype.group].append(rtype.version)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": group,
             "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
             "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
            for group, versions in groups.items()
        ]}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        for rtype in RESOURCE_TYPES:
            if rtype.group == group and rtype.version == version:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                resources.append({"name": rtype.plural, "singularName": rtype.kind.lower(),
                                  "namespaced": rtype.namespaced, "kind": rtype.kind, "verbs": verbs})
                for sub in rtype.subresources:
                    resources.append({"name": f"{rtype.plural}/{sub}", "singularName": "",
                                      "namespaced": rtype.namespaced, "kind": rtype.kind,
                                      "verbs": ["get", "patch", "update"]})
        if not resources:
            raise ApiError(404, "NotFound", f"stand-in serves no resources in {group}/{version}")
        return {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}

    def _parse_object_path(self, parts: list[str]) -> tuple[ResourceType, str | None, str | None, str | None]:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "stand-in: unknown path /" + "/".join(parts))
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        for rtype in RESOURCE_TYPES:
            if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
                return rtype, namespace, name, sub
        raise ApiError(404, "NotFound", f"stand-in serves no resource {group}/{version}/{plural}")

    def _require(self, rtype: ResourceType, namespace: str | None, name: str | None) -> dict[str, Any]:
        obj = self.state.get(rtype.kind, namespace, name or "")
        if obj is None:
            raise ApiError(404, "NotFound", f'{rtype.plural} "{name}" not found')
        return obj

    # Object semantics ----------------------------------------------------------------

    def _server_side_apply(self, rtype: ResourceType, namespace: str | None, name: str | None,
                           body: dict[str, Any], dry_run: bool) -> tuple[int, dict[str, Any]]:
        current = self.state.get(rtype.kind, namespace, name or "")
        desired = copy.deepcopy(body)
        desired.setdefault("metadata", {})["namespace"] = namespace
        if current is not None:
            # Fields the applier does not set stay as other managers left them.
            if "status" in current:
                desired["status"] = copy.deepcopy(current["status"])
            for key, value in current["metadata"].get("annotations", {}).items():
                if key.startswith("deployment.kubernetes.io/"):
                    desired["metadata"].setdefault("annotations", {})[key] = value
            if rtype.kind == "Deployment" and "replicas" not in desired.get("spec", {}):
                desired["spec"]["replicas"] = current["spec"].get("replicas", 1)
            if rtype.kind == "Job":
                desired["spec"]["selector"] = current["spec"]["selector"]
                desired["spec"]["template"]["metadata"]["labels"] = current["spec"]["template"]["metadata"]["labels"]
        status = 200 if current is not None else 201
        return status, self._store(rtype, namespace, name or "", desired, current, dry_run)

    def _store(self, rtype: ResourceType, namespace: str | None, name: str, desired: dict[str, Any],
               current: dict[str, Any] | None, dry_run: bool) -> dict[str, Any]:
        self._default(rtype, desired, namespace, name)
        if current is not None:
            self._check_immutable(rtype, current, desired)
            for key in _SERVER_METADATA:
                if key in current["metadata"]:
                    desired["metadata"][key] = current["metadata"][key]
            if self._comparable(desired) == self._comparable(current):
                return copy.deepcopy(current)
            if desired.get("spec") != current.get("spec"):
                desired["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        else:
            digest = hashlib.sha1(f"{rtype.kind}/{namespace}/{name}".encode()).hexdigest()
            desired["metadata"].update({
                "uid": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
                "generation": 1,
                # Later objects get later timestamps, so sorting by age works as on a server.
                "creationTimestamp": (_EPOCH + datetime.timedelta(seconds=self.state.counter + 1))
                .strftime("%Y-%m-%dT%H:%M:%SZ"),
            })
        desired["metadata"]["resourceVersion"] = str(self.state.counter + 1)
        if dry_run:
            return desired
        self.state.next_version()
        self.state.objects[(rtype.kind, namespace, name)] = desired
        self._reconcile(rtype, desired, current)
        return copy.deepcopy(self.state.objects[(rtype.kind, namespace, name)])

    @staticmethod
    def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
        clone = copy.deepcopy(obj)
        clone["metadata"].pop("resourceVersion", None)
        clone["metadata"].pop("generation", None)
        return clone

    @staticmethod
    def _default(rtype: ResourceType, obj: dict[str, Any], namespace: str | None, name: str) -> None:
        obj.setdefault("apiVersion", rtype.group_version)
        obj.setdefault("kind", rtype.kind)
        obj["metadata"]["name"] = name
        if rtype.namespaced:
            obj["metadata"]["namespace"] = namespace
        if rtype.kind == "Deployment":
            obj["spec"].setdefault("replicas", 1)
        if rtype.kind == "Job":
            labels = {"batch.kubernetes.io/job-name": name, "job-name": name}
            obj["spec"].setdefault("selector", {"matchLabels": {"batch.kubernetes.io/job-name": name}})
            obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(labels)

    @staticmethod
    def _check_immutable(rtype: ResourceType, current: dict[str, Any], desired: dict[str, Any]) -> None:
        if rtype.kind == "Job" and current["spec"]["template"] != desired["spec"]["template"]:
            raise ApiError(422, "Invalid", f'Job.batch "{current["metadata"]["name"]}" is invalid: '
                           "spec.template: Invalid value: field is immutable")
        if rtype.kind == "PersistentVolumeClaim":
            before = {k: v for k, v in current["spec"].items() if k != "resources"}
            after = {k: v for k, v in desired["spec"].items() if k != "resources"}
            if before != after:
                raise ApiError(422, "Invalid", "spec is immutable after creation except "
                               "resources.requests for bound claims")

    # Controllers -----------------------------------------------------------------------

    def _reconcile(self, rtype: ResourceType, obj: dict[str, Any], previous: dict[str, Any] | None) -> None:
        if rtype.kind == "Deployment":
            self._reconcile_deployment(obj, previous)
        elif rtype.kind == "Job" and previous is None:
            self._start_job(obj)
        elif rtype.kind == "VolumeSnapshot":
            obj["status"] = {"readyToUse": True}

    def _start_job(self, job: dict[str, Any]) -> None:
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        job["status"] = {"active": 1, "pollsUntilDone": 1}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-0-standin", "namespace": namespace,
                         "labels": dict(job["spec"]["template"]["metadata"]["labels"])},
            "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
            "status": {"phase": "Running"},
        }
        self.state.objects[("Pod", namespace, pod["metadata"]["name"])] = pod
        failing = any(marker in name for marker in self.state.failing_jobs)
        self.state.logs[(namespace, pod["metadata"]["name"])] = "\n".join(
            [f"{name}: reading sources"]
            + ([f"{name}: line {i}: invalid value" for i in range(1, 60)]
               + [f"{name}: data error in flights.csv line 7, column dep_time: not an integer"]
               if failing else [f"{name}: published generation"])
        ) + "\n"

    def _observe(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Advance a running Job by one status poll, the way a real Job progresses over time."""
        if obj.get("kind") != "Job" or "pollsUntilDone" not in obj.get("status", {}):
            return obj
        status = obj["status"]
        status["pollsUntilDone"] -= 1
        if status["pollsUntilDone"] >= 0:
            return obj
        name = obj["metadata"]["name"]
        failing = any(marker in name for marker in self.state.failing_jobs)
        condition = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit") \
            if failing else ("Complete", "", "")
        obj["status"] = {
            ("failed" if failing else "succeeded"): obj["spec"].get("completions", 1),
            "conditions": [{"type": condition[0], "status": "True", "reason": condition[1],
                            "message": condition[2]}],
        }
        pod = self.state.get("Pod", obj["metadata"]["namespace"], f"{name}-0-standin")
        if pod is not None:
            pod["status"]["phase"] = "Failed" if failing else "Succeeded"
        return obj

    def _reconcile_deployment(self, deployment: dict[str, Any], previous: dict[str, Any] | None) -> None:
        template = deployment["spec"]["template"]
        namespace = deployment["metadata"]["namespace"]
        name = deployment["metadata"]["name"]
        template_hash = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        owned = [rs for rs in self.state.list("ReplicaSet", namespace)
                 if rs["metadata"].get("labels", {}).get("rodata-standin/owner") == name]
        match = next((rs for rs in owned if rs["metadata"]["labels"]["pod-template-hash"] == template_hash), None)
        revisions = [int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in owned]
        if match is None:
            revision = max(revisions, default=0) + 1
            rs_template = copy.deepcopy(template)
            rs_template["metadata"].setdefault("labels", {})["pod-template-hash"] = template_hash
            labels = dict(deployment["spec"]["selector"]["matchLabels"])
            labels.update({"pod-template-hash": template_hash, "rodata-standin/owner": name})
            self.state.objects[("ReplicaSet", namespace, f"{name}-{template_hash}")] = {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{name}-{template_hash}", "namespace": namespace, "labels": labels,
                             "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
                "spec": {"replicas": deployment["spec"]["replicas"], "template": rs_template},
            }
        else:
            # A rollback re-activates an older ReplicaSet under a new revision number.
            revision = int(match["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
            if previous is not None and previous["spec"]["template"] != template:
                revision = max(revisions) + 1
                match["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        deployment["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)

        replicas = deployment["spec"]["replicas"]
        images = [c.get("image", "") for c in template["spec"].get("containers", [])]
        broken = any(marker in image for marker in self.state.broken_images for image in images)
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": 0 if broken else replicas,
            "availableReplicas": 0 if broken else replicas,
            **({"unavailableReplicas": replicas} if broken else {}),
        }

    def _log(self, namespace: str | None, name: str | None, query: dict[str, str]) -> str:
        text = self.state.logs.get((namespace, name or ""))
        if text is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        lines = text.splitlines()
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"]):]
        return "\n".join(lines) + "\n"
