#!/usr/bin/env python3
"""berth-specific checks of the deployment manifests (run by
check-manifests.sh): what a schema validator cannot know.

    manifests.py yaml FILE...          every file parses as YAML
    manifests.py k8s FILE              the StatefulSet cluster is consistent
    manifests.py compose FILE          the compose cluster is consistent
    manifests.py env FILE SERVE_HELP   every BERTH_* key is a `berth serve` variable

Prints what is wrong, one line each, and exits 1 if anything is.
"""

import re
import sys

import yaml

PORT = 7070
PROBLEMS = []


def problem(text):
    PROBLEMS.append(text)


def expect(cond, text):
    if not cond:
        problem(text)
    return cond


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_yaml(paths):
    for path in paths:
        try:
            docs = load_all(path)
            expect(docs, f"{path}: no YAML document")
        except Exception as e:  # noqa: BLE001 - report any parse error
            problem(f"{path}: {e}")


def parse_members(text):
    """`1=host:port,2=…` as {id: "host:port"}, checking the syntax berth accepts."""
    members = {}
    for item in text.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)=(.+):(\d+)", item)
        if not expect(m, f"initial cluster member {item!r} is not ID=HOST:PORT"):
            continue
        node_id, host, port = int(m.group(1)), m.group(2), int(m.group(3))
        expect(node_id > 0, f"member id {node_id} is not positive")
        expect(0 < port < 65536, f"member port {port} is out of range")
        expect(node_id not in members, f"member id {node_id} appears twice")
        members[node_id] = f"{host}:{port}"
    return members


def expand(value, env):
    """Kubernetes `$(VAR)` expansion against the variables defined so far."""
    def sub(m):
        name = m.group(1)
        if not expect(name in env, f"$({name}) is used before it is defined"):
            return m.group(0)
        return env[name]
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


def check_k8s(path):
    docs = load_all(path)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    sts_list = by_kind.get("StatefulSet", [])
    if not expect(len(sts_list) == 1, f"expected one StatefulSet, found {len(sts_list)}"):
        return
    sts = sts_list[0]
    spec = sts["spec"]
    name = sts["metadata"]["name"]
    replicas = spec.get("replicas", 1)
    expect(replicas == 3, f"StatefulSet replicas is {replicas}, expected 3")
    expect(spec.get("podManagementPolicy") == "Parallel",
           "podManagementPolicy must be Parallel (no member is ready before a majority runs)")
    selector = spec["selector"]["matchLabels"]
    pod = spec["template"]
    pod_labels = pod["metadata"]["labels"]
    expect(all(pod_labels.get(k) == v for k, v in selector.items()),
           f"pod labels {pod_labels} do not match the selector {selector}")

    # The headless Service the pods' DNS names come from.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    headless = services.get(spec.get("serviceName"))
    if expect(headless is not None, f"serviceName {spec.get('serviceName')!r} is not a Service in the file"):
        hs = headless["spec"]
        expect(hs.get("clusterIP") == "None", "the peers' Service must be headless (clusterIP: None)")
        expect(hs.get("publishNotReadyAddresses") is True,
               "the headless Service must publish not-ready pods (peers resolve each other before quorum)")
        expect(hs.get("selector") == selector, "the headless Service selects other pods than the StatefulSet")
        expect(any(p.get("port") == PORT for p in hs.get("ports", [])), f"the headless Service lacks port {PORT}")
    clients = [s for s in services.values() if s is not headless]
    expect(clients, "no client Service")
    for s in clients:
        expect(s["spec"].get("clusterIP") != "None", f"client Service {s['metadata']['name']} is headless")
        expect(s["spec"].get("selector") == selector, f"client Service {s['metadata']['name']} selects other pods")

    pdbs = by_kind.get("PodDisruptionBudget", [])
    if expect(len(pdbs) == 1, f"expected one PodDisruptionBudget, found {len(pdbs)}"):
        pdb = pdbs[0]["spec"]
        expect(pdb.get("maxUnavailable") == 1, "the PodDisruptionBudget must allow exactly one disruption")
        expect(pdb.get("selector", {}).get("matchLabels") == selector, "the PodDisruptionBudget selects other pods")

    containers = pod["spec"]["containers"]
    berth = next((c for c in containers if c["name"] == "berth"), None)
    if not expect(berth is not None, "no container named berth"):
        return
    expect(any(p.get("containerPort") == PORT for p in berth.get("ports", [])), f"container port {PORT} missing")
    rp = berth.get("readinessProbe", {})
    expect(rp.get("grpc", {}).get("port") == PORT, "readiness must be the gRPC health probe on port 7070")
    expect("livenessProbe" in berth, "no liveness probe")
    lp = berth.get("livenessProbe", {})
    if "grpc" in lp and not lp["grpc"].get("service"):
        problem("liveness must not be the quorum-dependent health status (service \"\")")
    if "exec" in lp:
        cmd = lp["exec"]["command"]
        expect(cmd[0].startswith("/"), "the exec liveness probe needs an absolute path (no shell, no PATH lookup)")
        expect(any("serializable" in a for a in cmd), "the exec liveness probe must not need a quorum")

    mounts = {m["name"]: m["mountPath"] for m in berth.get("volumeMounts", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
    for vol in mounts:
        expect(vol in claims or vol in volumes, f"volumeMount {vol} has no volume or claim template")

    # Environment, expanded the way the kubelet does it, for every ordinal.
    env_spec = berth.get("env", [])
    members_by_pod = []
    for ordinal in range(replicas):
        pod_name = f"{name}-{ordinal}"
        env = {}
        for e in env_spec:
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
            else:
                ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
                env[e["name"]] = {
                    "metadata.name": pod_name,
                    "metadata.namespace": "ns-under-test",
                    "metadata.labels['apps.kubernetes.io/pod-index']": str(ordinal),
                }.get(ref, f"<{ref}>")
        for key in ("BERTH_NODE_ID", "BERTH_ADVERTISE", "BERTH_INITIAL_CLUSTER"):
            expect(key in env, f"{pod_name}: {key} is not set")
        if "BERTH_INITIAL_CLUSTER" not in env:
            return
        expect(env.get("BERTH_LISTEN", "0.0.0.0:7070").startswith(("0.0.0.0:", "[::]:")),
               f"{pod_name}: BERTH_LISTEN must be a wildcard address, not {env.get('BERTH_LISTEN')}")
        node_id = env["BERTH_NODE_ID"]
        if not expect(node_id.isdigit() and int(node_id) > 0, f"{pod_name}: node id {node_id!r} is not a positive integer"):
            continue
        members = parse_members(env["BERTH_INITIAL_CLUSTER"])
        members_by_pod.append(members)
        expected_addr = f"{pod_name}.{spec['serviceName']}.ns-under-test.svc.cluster.local:{PORT}"
        expect(env["BERTH_ADVERTISE"] == expected_addr,
               f"{pod_name}: advertises {env['BERTH_ADVERTISE']}, expected its stable DNS name {expected_addr}")
        expect(members.get(int(node_id)) == env["BERTH_ADVERTISE"],
               f"{pod_name}: id {node_id} at {env['BERTH_ADVERTISE']} is not in the initial cluster {members}")
    if members_by_pod:
        expect(all(m == members_by_pod[0] for m in members_by_pod), "pods get different initial cluster lists")
        expect(len(members_by_pod[0]) == replicas,
               f"the initial cluster lists {len(members_by_pod[0])} members for {replicas} replicas")


def check_compose(path):
    doc = load_all(path)[0]
    services = doc.get("services", {})
    nodes = sorted(n for n in services if re.fullmatch(r"berth-\d+", n))
    expect(nodes == ["berth-1", "berth-2", "berth-3"], f"services are {sorted(services)}, expected berth-1..3")
    lists = set()
    volumes = set()
    for n in nodes:
        s = services[n]
        env = s.get("environment", {})
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        node_id = int(n.split("-")[1])
        expect(str(env.get("BERTH_NODE_ID")) == str(node_id), f"{n}: BERTH_NODE_ID is {env.get('BERTH_NODE_ID')}")
        expect(env.get("BERTH_ADVERTISE") == f"{n}:{PORT}", f"{n}: BERTH_ADVERTISE is {env.get('BERTH_ADVERTISE')}")
        members = parse_members(env.get("BERTH_INITIAL_CLUSTER", ""))
        expect(members == {i: f"berth-{i}:{PORT}" for i in (1, 2, 3)}, f"{n}: initial cluster is {members}")
        lists.add(env.get("BERTH_INITIAL_CLUSTER"))
        expect(s.get("restart") in ("unless-stopped", "always"), f"{n}: restart policy is {s.get('restart')}")
        test = s.get("healthcheck", {}).get("test", [])
        expect(test[:1] == ["CMD"] and "health" in test,
               f"{n}: the healthcheck must exec `berth … cluster health` (no shell in the image): {test}")
        ports = s.get("ports", [])
        expect(len(ports) == 1, f"{n}: expected one published port, got {ports}")
        for p in ports:
            text = str(p)
            expect(text.startswith("127.0.0.1:") and text.endswith(f":{PORT}") or text.startswith("${BERTH_PUBLISH_ADDR:-127.0.0.1}:"),
                   f"{n}: port {text} is not published on 127.0.0.1 by default")
        mounts = s.get("volumes", [])
        data = [m for m in mounts if str(m).endswith(":/var/lib/berth")]
        run = [m for m in mounts if str(m).endswith(":/run/berth")]
        if expect(len(data) == 1, f"{n}: no volume on /var/lib/berth"):
            vol = str(data[0]).split(":")[0]
            expect(vol in (doc.get("volumes") or {}), f"{n}: data volume {vol} is not a named volume")
            volumes.add(vol)
        expect(len(run) == 1 and str(run[0])[: -len(":/run/berth")].endswith(f"/{n}"),
               f"{n}: socket dir is not bind-mounted from …/{n}")
    expect(len(lists) == 1, "the nodes get different initial cluster lists")
    expect(len(volumes) == len(nodes), f"nodes share data volumes: {volumes}")


def check_env(path, serve_help_path):
    with open(serve_help_path) as f:
        known = set(re.findall(r"env: (BERTH_[A-Z0-9_]+)", f.read()))
    expect(known, f"no BERTH_* variables found in {serve_help_path}")
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            m = re.match(r"\s*#?\s*(BERTH_[A-Z0-9_]+)=", line)
            if m:
                expect(m.group(1) in known | {"BERTH_LOG"}, f"{path}:{lineno}: {m.group(1)} is not a berth serve variable")


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    what, args = argv[1], argv[2:]
    try:
        {"yaml": lambda: check_yaml(args),
         "k8s": lambda: check_k8s(args[0]),
         "compose": lambda: check_compose(args[0]),
         "env": lambda: check_env(args[0], args[1])}[what]()
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        problem(f"unexpected structure: {type(e).__name__}: {e}")
    for p in PROBLEMS:
        print(p)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
