"""test_deploy_files: the deployment files are valid as their tools read them: the Kubernetes
manifests against the API schemas (kubernetes-validate --strict, from var/venv), the compose
file as docker-compose reads it with deploy/.env.example as its .env, and the gateway
configurations of compose and Kubernetes as the gateway itself checks them (`gateway --check`,
with a certificate at their paths); every upstream they name is a service of that file. The
Swarm stack runs what compose runs, with the same settings, and mounts every file they name."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

DEPLOY = os.path.join(procs.ROOT, "deploy")
K8S = os.path.join(DEPLOY, "k8s")


def manifests():
    return sorted(os.path.join(K8S, f) for f in os.listdir(K8S)
                  if f.endswith(".yaml") and f != "kustomization.yaml")


@test
def kubernetes_manifests_are_valid():
    tool = os.path.join(procs.ROOT, "var", "venv", "bin", "kubernetes-validate")
    r = subprocess.run([tool, "--strict", "--quiet", *manifests()], capture_output=True, text=True,
                       timeout=300)
    eq(r.returncode, 0, r.stdout + r.stderr)
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        listed = set(re.findall(r"^  - (\S+\.yaml)$", f.read(), re.M))
    eq(listed, {os.path.basename(m) for m in manifests()} - {"secrets.example.yaml"},
       "kustomization lists every manifest but the secrets example")


def gateway_check(ini_text, cert_dir_in_file):
    """gateway --check on ini_text with cert_dir_in_file pointing at a fresh certificate."""
    tmp = tempfile.mkdtemp(prefix="suite-deployfiles-")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=x",
                        "-keyout", os.path.join(tmp, "k.pem"), "-out", os.path.join(tmp, "c.pem")],
                       check=True, capture_output=True)
        text = re.sub(r"^cert = .*$", f"cert = {tmp}/c.pem", ini_text, flags=re.M)
        text = re.sub(r"^key = .*$", f"key = {tmp}/k.pem", text, flags=re.M)
        text = re.sub(r"^(docs_dir|openapi|acme_webroot) = .*\n", "", text, flags=re.M)
        path = os.path.join(tmp, "gateway.ini")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([procs.binary("gateway/gateway"), "--config", path, "--check"],
                              capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test
def compose_file_and_its_gateway_config_are_valid():
    tmp = tempfile.mkdtemp(prefix="suite-compose-")
    try:
        for name in ("docker-compose.yml",):
            shutil.copy(os.path.join(DEPLOY, name), tmp)
        shutil.copy(os.path.join(DEPLOY, ".env.example"), os.path.join(tmp, ".env"))
        os.symlink(os.path.join(DEPLOY, "compose"), os.path.join(tmp, "compose"))
        r = subprocess.run(["docker-compose", "-f", os.path.join(tmp, "docker-compose.yml"), "config"],
                           capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, r.stderr)
        services = set(re.findall(r"^  ([a-z][a-z0-9-]*):$", r.stdout.split("\nvolumes:")[0], re.M))
        true({"gateway", "svc-auth", "svc-payments", "svc-storage", "worker-ocr", "worker-archive",
              "postgres", "redis", "init", "backup"} <= services, f"services: {services}")
        true(not re.search(r"^ +[A-Z_]+: '?# ", r.stdout, re.M), "no comment text taken as a value")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(DEPLOY, "compose", "gateway.ini")) as f:
        ini = f.read()
    for host in re.findall(r"^servers = (\S+):\d+$", ini, re.M):
        true(host in services, f"upstream {host} is a compose service")
    r = gateway_check(ini, "/etc/suite/certs")
    eq(r.returncode, 0, r.stdout + r.stderr)


def yaml_file(path):
    """A YAML file as Python data, read by PyYAML from var/venv."""
    r = subprocess.run([os.path.join(procs.ROOT, "var", "venv", "bin", "python"), "-c",
                        "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                        path], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(r.stdout)


@test
def swarm_stack_runs_what_compose_runs_with_the_same_settings():
    compose = yaml_file(os.path.join(DEPLOY, "docker-compose.yml"))["services"]
    stack = yaml_file(os.path.join(DEPLOY, "stack.yml"))
    services = stack["services"]
    eq(sorted(services), sorted(set(compose) - {"init", "certbot"}),
       "every compose service but the init step and certbot")
    for name, svc in services.items():
        eq(svc["image"], compose[name]["image"], f"{name} image")
        env = dict(svc.get("environment") or {})
        if "TRUSTED_PROXIES" in env:
            # the internal subnet differs in its default only (overlay vs bridge)
            env["TRUSTED_PROXIES"] = compose[name]["environment"]["TRUSTED_PROXIES"]
        eq(env, compose[name].get("environment") or {}, f"{name} environment")
        mounted = {m["target"] for m in svc.get("secrets", [])} | \
                  {m["target"] for m in svc.get("configs", [])}
        for key, value in env.items():
            if key == "PGPASSWORD_FILE" and name.startswith("worker-"):
                continue  # the shared settings name it; the workers use no database
            if key.endswith("_FILE") or key == "AUTH_SIGNING_KEYS":
                true(value in mounted, f"{name}: {key}={value} is mounted ({sorted(mounted)})")
        for m in svc.get("secrets", []):
            true(m["source"] in stack["secrets"], f"{name}: secret {m['source']} declared")
        if name not in ("gateway", "backup"):
            eq(svc["deploy"].get("endpoint_mode"), "dnsrr", f"{name}: DNS names every task")
    gw = services["gateway"]
    true({c["target"] for c in gw["configs"]} == {"/etc/suite/gateway.ini"}, "the gateway's config")
    true({"/etc/suite/certs/server.crt", "/etc/suite/certs/server.key"} <=
         {m["target"] for m in gw["secrets"]}, "the certificate where gateway.ini says")
    with open(os.path.join(DEPLOY, "swarm-secrets")) as f:
        made = set(re.search(r"names=\(([^)]*)\)", f.read()).group(1).split())
    eq(made, set(stack["secrets"]), "deploy/swarm-secrets makes every secret the stack names")


@test
def kubernetes_gateway_config_is_valid_and_names_headless_services():
    with open(os.path.join(K8S, "gateway-config.yaml")) as f:
        text = f.read()
    ini = "\n".join(line[4:] for line in text.split("gateway.ini: |\n", 1)[1].splitlines())
    r = gateway_check(ini, "/etc/suite/certs")
    eq(r.returncode, 0, r.stdout + r.stderr)
    names = set()
    for m in manifests():
        with open(m) as f:
            doc = f.read()
        for part in doc.split("\n---\n"):
            m = re.search(r"^kind: Service\nmetadata:\n  name: (\S+)$", part, re.M)
            if m and re.search(r"^  clusterIP: None$", part, re.M):
                names.add(m.group(1))
    for host in re.findall(r"^servers = (\S+):\d+$", ini, re.M):
        true(host in names, f"upstream {host} is a headless service ({sorted(names)})")


if __name__ == "__main__":
    main("deploy_files")
