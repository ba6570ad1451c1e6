//! The CRD as an API server will see it: structural, documented, with CEL rules that compile,
//! fire on bad objects and pass good ones, and examples that validate.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kube::CustomResourceExt;
use kube::core::cel::{ScopeContext, Validator, WarningKind, analyze_rule, compile_schema};
use salad_sd_api::{StableDiffusionDeployment, crd_yaml, validate::validate};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema() -> Value {
    let crd = StableDiffusionDeployment::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("manifests/examples").join(name)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// Visit every schema node with its JSON path.
fn walk<'a>(node: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, node);
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, format!("{path}.{k}"), visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, format!("{path}[]"), visit);
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, format!("{path}{{}}"), visit);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = node.get(junctor).and_then(Value::as_array) {
            for (i, v) in list.iter().enumerate() {
                walk(v, format!("{path}.{junctor}[{i}]"), visit);
            }
        }
    }
}

#[test]
fn every_property_has_a_description() {
    let schema = schema();
    let mut missing = Vec::new();
    walk(&schema, "$".into(), &mut |path, node| {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let documented = v
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                // apiVersion/kind/metadata are Kubernetes' own, documented by the API server.
                let kubernetes_own =
                    path == "$" && ["apiVersion", "kind", "metadata"].contains(&k.as_str());
                if !documented && !kubernetes_own {
                    missing.push(format!("{path}.{k}"));
                }
            }
        }
    });
    assert!(
        missing.is_empty(),
        "properties without description: {missing:#?}"
    );
}

#[test]
fn schema_is_structural() {
    let schema = schema();
    let text = schema.to_string();
    for forbidden in ["\"$ref\"", "\"definitions\"", "\"$schema\"", "\"$defs\""] {
        assert!(!text.contains(forbidden), "schema contains {forbidden}");
    }
    let mut problems = Vec::new();
    walk(&schema, "$".into(), &mut |path, node| {
        let in_junctor =
            path.contains(".allOf[") || path.contains(".anyOf[") || path.contains(".oneOf[");
        if in_junctor {
            for key in [
                "type",
                "description",
                "default",
                "additionalProperties",
                "nullable",
            ] {
                if node.get(key).is_some() {
                    problems.push(format!("{path}: `{key}` inside a junctor"));
                }
            }
            return;
        }
        let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&json!(true));
        if node.get("x-kubernetes-preserve-unknown-fields").is_some() {
            problems.push(format!(
                "{path}: preserve-unknown-fields is not used deliberately anywhere"
            ));
        }
        if node.get("type").is_none() && !int_or_string {
            problems.push(format!("{path}: untyped node"));
        }
        if node.get("properties").is_some() && node.get("additionalProperties").is_some() {
            problems.push(format!(
                "{path}: properties and additionalProperties together"
            ));
        }
        if let Some(values) = node.get("enum").and_then(Value::as_array)
            && values.iter().any(Value::is_null)
        {
            problems.push(format!("{path}: null in enum"));
        }
    });
    assert!(problems.is_empty(), "non-structural nodes: {problems:#?}");
}

#[test]
fn committed_crd_matches_the_code() {
    let committed = std::fs::read_to_string(
        repo_root().join("crds/salad-sd.dev_stablediffusiondeployments.yaml"),
    )
    .expect("crds/salad-sd.dev_stablediffusiondeployments.yaml exists (make crds)");
    assert!(
        committed == crd_yaml(),
        "crds/ is stale: run `make crds` and commit the result"
    );
}

#[test]
fn crd_has_the_subresources_and_columns_users_expect() {
    let crd = StableDiffusionDeployment::crd();
    let v = &crd.spec.versions[0];
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    let columns: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Ready", "Phase", "Replicas", "URL", "Image", "Fleet", "Age"]
    );
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["sdd".to_string()][..])
    );
    assert_eq!(crd.spec.group, "salad-sd.dev");
}

/// Every CEL rule in the schema, as (path, rule, message).
fn cel_rules(schema: &Value) -> Vec<(String, String, String)> {
    let mut rules = Vec::new();
    walk(schema, "$".into(), &mut |path, node| {
        if let Some(list) = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            for r in list {
                rules.push((
                    path.to_string(),
                    r["rule"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    });
    rules
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    let schema = schema();
    let compiled = compile_schema(&schema);
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
    let rules = cel_rules(&schema);
    assert!(
        rules.len() >= 12,
        "expected the documented rules, found {}",
        rules.len()
    );
    let mut checked = 0;
    walk(&schema, "$".into(), &mut |path, node| {
        let Some(list) = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        else {
            return;
        };
        // Cost is estimated against the node the rule sits on, where its bounds are.
        let local = compile_schema(node);
        for r in list {
            let rule = r["rule"].as_str().unwrap();
            assert!(
                r.get("message").is_some(),
                "rule at {path} has no message: {rule}"
            );
            for warning in analyze_rule(rule, &local, ScopeContext::CrdValidation) {
                // WrongScope is not checked: the analyser does not know comprehension variables.
                assert!(
                    warning.kind != WarningKind::CostExceeded,
                    "{path}: {rule}: {warning:?}"
                );
            }
            checked += 1;
        }
    });
    assert_eq!(checked, rules.len());
}

type Mutation = fn(&mut Value);

struct CelCase {
    reason: &'static str,
    /// A distinctive piece of the rule's message.
    message: &'static str,
    /// Turns the valid base object into one that breaks the rule.
    break_it: Mutation,
    /// For transition rules: the previous object (derived from the base).
    old: Option<Mutation>,
}

/// The seed's checkpoint, fetched at start, pinned and sized.
fn fetched(o: &mut Value) {
    let m = &mut o["spec"]["models"][0];
    m["delivery"] = json!("FetchedAtStart");
    m["source"]["sha256"] = json!("a".repeat(64));
    m["source"]["sizeBytes"] = json!(2_132_625_894_i64);
    m["source"].as_object_mut().unwrap().remove("authSecretRef");
}

fn cel_cases() -> Vec<CelCase> {
    vec![
        CelCase {
            reason: "the queue autoscaler needs the queue it scales by",
            message: "queue.autoscaler scales by queue length",
            break_it: |o| {
                o["spec"]["queue"] = json!({"autoscaler": {"minReplicas": 0, "maxReplicas": 3}});
            },
            old: None,
        },
        CelCase {
            reason: "one owner of the replica count",
            message: "would both set the replica count",
            break_it: |o| {
                o["spec"]["queue"] =
                    json!({"enabled": true, "autoscaler": {"minReplicas": 0, "maxReplicas": 3}});
                o["spec"]["scaling"] = json!({"schedule": [{"cron": "0 8 * * *", "replicas": 3}]});
            },
            old: None,
        },
        CelCase {
            reason: "a custom server names its job endpoint",
            message: "server.kind Custom has no default job endpoint",
            break_it: |o| {
                o["spec"]["server"]["kind"] = json!("Custom");
                o["spec"]["server"]["baseImage"] = json!("example.com/my/server:1");
                o["spec"]["queue"] = json!({"enabled": true});
            },
            old: None,
        },
        CelCase {
            reason: "autoscaler bounds in order",
            message: "minReplicas must not be above maxReplicas",
            break_it: |o| {
                o["spec"]["queue"] =
                    json!({"enabled": true, "autoscaler": {"minReplicas": 5, "maxReplicas": 3}});
            },
            old: None,
        },
        CelCase {
            reason: "a mirrored worker is pinned",
            message: "a url needs its sha256",
            break_it: |o| {
                o["spec"]["queue"] =
                    json!({"enabled": true, "worker": {"url": "https://mirror.example/w.tar.gz"}});
            },
            old: None,
        },
        CelCase {
            reason: "no sha256 is pinned for the default worker: the queue needs one",
            message: "queue.worker.sha256 is required",
            break_it: |o| {
                o["spec"]["queue"] = json!({"enabled": true});
            },
            old: None,
        },
        CelCase {
            reason: "the container verifies a fetched model against its pinned sha256",
            message: "FetchedAtStart needs source.sha256",
            break_it: |o| {
                fetched(o);
                o["spec"]["models"][0]["source"]
                    .as_object_mut()
                    .unwrap()
                    .remove("sha256");
            },
            old: None,
        },
        CelCase {
            reason: "the startup window of a fetched model follows its size",
            message: "FetchedAtStart needs source.sizeBytes",
            break_it: |o| {
                fetched(o);
                o["spec"]["models"][0]["source"]
                    .as_object_mut()
                    .unwrap()
                    .remove("sizeBytes");
            },
            old: None,
        },
        CelCase {
            reason: "the build's token never reaches the container unasked",
            message: "instead of source.authSecretRef",
            break_it: |o| {
                fetched(o);
                o["spec"]["models"][0]["source"]["authSecretRef"] =
                    json!({"name": "civitai", "key": "token"});
            },
            old: None,
        },
        CelCase {
            reason: "a container token on a baked model would reach instances for nothing",
            message: "fetchAuthSecretRef is only for delivery FetchedAtStart",
            break_it: |o| {
                o["spec"]["models"][0]["source"]["fetchAuthSecretRef"] =
                    json!({"name": "civitai", "key": "token"});
            },
            old: None,
        },
        CelCase {
            reason: "SD.Next has nothing to load without a checkpoint",
            message: "SDNext and Automatic1111 need a model of kind Checkpoint",
            break_it: |o| {
                o["spec"]["models"][0]["kind"] = json!("Lora");
                o["spec"]["models"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("default");
            },
            old: None,
        },
        CelCase {
            reason: "--api-only binds IPv4 only, out of the gateway's reach",
            message: "--api-only listens on IPv4 only",
            break_it: |o| o["spec"]["server"]["args"] = json!(["--api-only"]),
            old: None,
        },
        CelCase {
            reason: "newer SD.Next exits on unknown flags",
            message: "--no-download exists only in old SD.Next builds",
            break_it: |o| o["spec"]["server"]["args"] = json!(["--lowvram", "--no-download"]),
            old: None,
        },
        CelCase {
            reason: "upstream's current SD.Next has no original backend",
            message: "server.backend Original does not exist",
            break_it: |o| {
                o["spec"]["server"]["layout"] = json!("Upstream");
                o["spec"]["server"]["backend"] = json!("Original");
            },
            old: None,
        },
        CelCase {
            reason: "socat would collide with A1111's own listener",
            message: "server.port 7859 is where Automatic1111 itself listens",
            break_it: |o| {
                o["spec"]["server"]["kind"] = json!("Automatic1111");
                o["spec"]["server"]["port"] = json!(7859);
                o["spec"]["gateway"]["port"] = json!(7859);
            },
            old: None,
        },
        CelCase {
            reason: "a checkpoint without a known extension is not listed",
            message: "a Checkpoint's name must end in",
            break_it: |o| o["spec"]["models"][0]["name"] = json!("dreamshaper_8.zip"),
            old: None,
        },
        CelCase {
            reason: "a LoRA without a known extension is not listed",
            message: "a Lora or VAE name must end in",
            break_it: |o| {
                let mut lora = o["spec"]["models"][0].clone();
                lora["name"] = json!("detail.bin");
                lora["kind"] = json!("Lora");
                lora.as_object_mut().unwrap().remove("default");
                o["spec"]["models"].as_array_mut().unwrap().push(lora);
            },
            old: None,
        },
        CelCase {
            reason: "an embedding without a known extension is not listed",
            message: "an Embedding's name must end in",
            break_it: |o| {
                let mut emb = o["spec"]["models"][0].clone();
                emb["name"] = json!("easynegative.ckpt");
                emb["kind"] = json!("Embedding");
                emb.as_object_mut().unwrap().remove("default");
                o["spec"]["models"].as_array_mut().unwrap().push(emb);
            },
            old: None,
        },
        CelCase {
            reason: "a ControlNet without a known extension is not listed",
            message: "a ControlNet's name must end in",
            break_it: |o| {
                let mut cn = o["spec"]["models"][0].clone();
                cn["name"] = json!("canny.onnx");
                cn["kind"] = json!("ControlNet");
                cn.as_object_mut().unwrap().remove("default");
                o["spec"]["models"].as_array_mut().unwrap().push(cn);
            },
            old: None,
        },
        CelCase {
            reason: "BlueGreen creates a new group per rollout, which a fixed name forbids",
            message: "rollout.strategy BlueGreen needs",
            break_it: |o| o["spec"]["saladcloud"]["containerGroupName"] = json!("fixed-name"),
            old: None,
        },
        CelCase {
            reason: "two default checkpoints leave --ckpt ambiguous",
            message: "at most one model may set default",
            break_it: |o| {
                let mut second = o["spec"]["models"][0].clone();
                second["name"] = json!("other.safetensors");
                o["spec"]["models"].as_array_mut().unwrap().push(second);
            },
            old: None,
        },
        CelCase {
            reason: "default only means something for a checkpoint",
            message: "default: true is only allowed on models of kind Checkpoint",
            break_it: |o| o["spec"]["models"][0]["kind"] = json!("Lora"),
            old: None,
        },
        CelCase {
            reason: "a Custom server has no default image",
            message: "server.kind Custom needs server.baseImage",
            break_it: |o| {
                o["spec"]["server"]["kind"] = json!("Custom");
                o["spec"]["server"]
                    .as_object_mut()
                    .unwrap()
                    .remove("baseImage");
            },
            old: None,
        },
        CelCase {
            reason: "the gateway must forward to the port the server listens on",
            message: "gateway.port must equal server.port",
            break_it: |o| o["spec"]["gateway"]["port"] = json!(8080),
            old: None,
        },
        CelCase {
            reason: "model names are file names and identities",
            message: "model names must be unique",
            break_it: |o| {
                let mut second = o["spec"]["models"][0].clone();
                second["default"] = json!(false);
                o["spec"]["models"].as_array_mut().unwrap().push(second);
            },
            old: None,
        },
        CelCase {
            reason: "extension names are directory names",
            message: "extension names must be unique",
            break_it: |o| {
                let ext = json!({"name": "x", "source": {"url": "https://example.com/x.tar.gz"}});
                o["spec"]["extensions"] = json!([ext.clone(), ext]);
            },
            old: None,
        },
        CelCase {
            reason: "renaming the container group would orphan the old one",
            message: "saladcloud.containerGroupName is immutable",
            break_it: |o| {
                o["spec"]["saladcloud"]["containerGroupName"] = json!("second-name");
                o["spec"]["rollout"]["strategy"] = json!("Recreate");
            },
            old: Some(|o| {
                o["spec"]["saladcloud"]["containerGroupName"] = json!("first-name");
                o["spec"]["rollout"]["strategy"] = json!("Recreate");
            }),
        },
        CelCase {
            reason: "adding a name later would switch groups silently",
            message: "saladcloud.containerGroupName is immutable",
            break_it: |o| {
                o["spec"]["saladcloud"]["containerGroupName"] = json!("late-name");
                o["spec"]["rollout"]["strategy"] = json!("Recreate");
            },
            old: Some(|o| o["spec"]["rollout"]["strategy"] = json!("Recreate")),
        },
        CelCase {
            reason: "adopt has nothing to adopt without a name",
            message: "saladcloud.adopt needs saladcloud.containerGroupName",
            break_it: |o| o["spec"]["saladcloud"]["adopt"] = json!(true),
            old: None,
        },
        CelCase {
            reason: "an env var takes a literal or a Secret, not both",
            message: "set exactly one of value or valueFrom",
            break_it: |o| {
                o["spec"]["server"]["env"] = json!([{
                    "name": "A", "value": "1",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}
                }])
            },
            old: None,
        },
        CelCase {
            reason: "the same env name twice is ambiguous",
            message: "environment variable names must be unique",
            break_it: |o| {
                o["spec"]["server"]["env"] =
                    json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])
            },
            old: None,
        },
        CelCase {
            reason: "Other has no directory to default to",
            message: "models of kind Other need path",
            break_it: |o| {
                o["spec"]["models"][0]["kind"] = json!("Other");
                o["spec"]["models"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("default");
            },
            old: None,
        },
        CelCase {
            reason: "512Mi is below SaladCloud's 1024 MB (a real apiserver admitted it)",
            message: "resources.memory must be 1024-1073741824 MB",
            break_it: |o| o["spec"]["resources"]["memory"] = json!("512Mi"),
            old: None,
        },
        CelCase {
            reason: "2048Ti is above SaladCloud's 1073741824 MB (a real apiserver admitted it)",
            message: "resources.memory must be 1024-1073741824 MB",
            break_it: |o| o["spec"]["resources"]["memory"] = json!("2048Ti"),
            old: None,
        },
        CelCase {
            reason: "100m is a CPU-style quantity, not a memory size (a real apiserver admitted it)",
            message: "resources.memory must be 1024-1073741824 MB",
            break_it: |o| o["spec"]["resources"]["memory"] = json!("100m"),
            old: None,
        },
        CelCase {
            reason: "a plain number is MB: 512 is below the minimum",
            message: "resources.memory must be 1024-1073741824 MB",
            break_it: |o| o["spec"]["resources"]["memory"] = json!(512),
            old: None,
        },
        CelCase {
            reason: "SaladCloud takes one probe handler",
            message: "a probe has at most one of http, tcp or exec",
            break_it: |o| {
                o["spec"]["probes"] = json!({"liveness": {
                    "http": {"path": "/sdapi/v1/memory"},
                    "exec": {"command": ["true"]},
                }});
            },
            old: None,
        },
    ]
}

fn cel_errors(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(schema, object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn every_cel_rule_passes_a_valid_object_and_fails_an_invalid_one() {
    let schema = schema();
    let base = example("sdnext-dreamshaper.yaml");
    assert_eq!(
        cel_errors(&schema, &base, None),
        Vec::<String>::new(),
        "the base example is valid"
    );
    assert_eq!(
        cel_errors(&schema, &base, Some(&base)),
        Vec::<String>::new(),
        "an unchanged update is valid"
    );

    let mut covered = BTreeSet::new();
    for case in cel_cases() {
        let mut bad = base.clone();
        (case.break_it)(&mut bad);
        let old = case.old.map(|m| {
            let mut o = base.clone();
            m(&mut o);
            o
        });
        if let Some(old) = &old {
            assert_eq!(
                cel_errors(&schema, old, None),
                Vec::<String>::new(),
                "{}: old object valid",
                case.reason
            );
        }
        let errors = cel_errors(&schema, &bad, old.as_ref());
        assert!(
            errors.iter().any(|e| e.contains(case.message)),
            "{}: expected `{}`, got {errors:?}",
            case.reason,
            case.message
        );
        // The same spec through the cluster-less path (`salad-sd apply -f`) is rejected too.
        if old.is_none() {
            let typed: StableDiffusionDeployment = serde_json::from_value(bad.clone()).unwrap();
            assert!(
                !validate(&typed.spec).is_empty(),
                "{}: Rust validation agrees",
                case.reason
            );
        }
        covered.insert(case.message);
    }
    for (path, rule, message) in cel_rules(&schema) {
        assert!(
            covered.iter().any(|m| message.contains(m)),
            "rule at {path} has no failing test case: {rule}"
        );
    }
}

/// A small OpenAPI v3 validator for what our schema uses (types, required, enums, patterns,
/// ranges, lengths, unknown fields), standing in for the API server's schema check.
fn openapi_errors(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&json!(true)) {
            out.push(format!("{path}: null not allowed"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            out.push(format!("{path}: want integer or string"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        out.push(format!("{path}: want {ty}, got {value}"));
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        out.push(format!("{path}: {value} not in {values:?}"));
    }
    if let Some(s) = value.as_str() {
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && !regex::Regex::new(p).unwrap().is_match(s)
        {
            out.push(format!("{path}: `{s}` does not match {p}"));
        }
        let len = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            out.push(format!("{path}: too short"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            out.push(format!("{path}: too long"));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            out.push(format!("{path}: {n} below minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            out.push(format!("{path}: {n} above maximum"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) < m)
        {
            out.push(format!("{path}: too few items"));
        }
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) > m)
        {
            out.push(format!("{path}: too many items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                openapi_errors(item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(map) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(required.as_str().unwrap()) {
                out.push(format!("{path}: missing required {required}"));
            }
        }
        for (k, v) in map {
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => openapi_errors(s, v, &format!("{path}.{k}"), out),
                (None, Some(ap)) if ap.is_object() => {
                    openapi_errors(ap, v, &format!("{path}.{k}"), out)
                }
                // The API server knows these three on every object.
                (None, _)
                    if path == "$" && ["apiVersion", "kind", "metadata"].contains(&k.as_str()) => {}
                (None, _) if props.is_some() => out.push(format!("{path}: unknown field `{k}`")),
                _ => {}
            }
        }
    }
}

#[test]
fn every_example_validates_against_the_schema_cel_and_rust_checks() {
    let schema = schema();
    let dir = repo_root().join("manifests/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let object = example(&name);
        let mut errors = Vec::new();
        openapi_errors(&schema, &object, "$", &mut errors);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        assert_eq!(
            cel_errors(&schema, &object, None),
            Vec::<String>::new(),
            "{name}"
        );
        let typed: StableDiffusionDeployment = serde_json::from_value(object).unwrap();
        assert_eq!(validate(&typed.spec), vec![], "{name}");
    }
    assert!(seen >= 2, "expected the examples in {dir:?}");
}

#[test]
fn the_schema_check_catches_what_the_api_server_would() {
    let schema = schema();
    let cases: Vec<(&str, Mutation)> = vec![
        ("replicas above SaladCloud's 500", |o| {
            o["spec"]["replicas"] = json!(501)
        }),
        ("probe failureThreshold above 20", |o| {
            o["spec"]["probes"]["startup"]["failureThreshold"] = json!(21)
        }),
        ("probe periodSeconds above 120", |o| {
            o["spec"]["probes"]["liveness"]["periodSeconds"] = json!(121)
        }),
        ("probe initialDelaySeconds above 1200", |o| {
            o["spec"]["probes"]["startup"]["initialDelaySeconds"] = json!(1201)
        }),
        ("probe timeoutSeconds above 60", |o| {
            o["spec"]["probes"]["startup"]["timeoutSeconds"] = json!(61)
        }),
        ("probe successThreshold above 10", |o| {
            o["spec"]["probes"]["startup"]["successThreshold"] = json!(11)
        }),
        ("sha256 not 64 hex", |o| {
            o["spec"]["models"][0]["source"]["sha256"] = json!("abc")
        }),
        ("unknown server kind", |o| {
            o["spec"]["server"]["kind"] = json!("InvokeAI")
        }),
        ("organization with capitals", |o| {
            o["spec"]["saladcloud"]["organization"] = json!("Acme")
        }),
        ("no GPU class", |o| {
            o["spec"]["resources"]["gpuClasses"] = json!([])
        }),
        ("cpu above SaladCloud's 1024", |o| {
            o["spec"]["resources"]["cpu"] = json!(1025)
        }),
        ("cpu below SaladCloud's 1", |o| {
            o["spec"]["resources"]["cpu"] = json!(0)
        }),
        (
            "a three-letter country code (a real apiserver admitted USA)",
            |o| o["spec"]["countryCodes"] = json!(["us", "USA"]),
        ),
        ("a well-formed code SaladCloud does not know", |o| {
            o["spec"]["countryCodes"] = json!(["zz"])
        }),
        ("a typo in a field name", |o| {
            o["spec"]["replica"] = json!(3)
        }),
    ];
    let base = example("sdnext-dreamshaper.yaml");
    for (reason, mutate) in cases {
        let mut bad = base.clone();
        mutate(&mut bad);
        let mut errors = Vec::new();
        openapi_errors(&schema, &bad, "$", &mut errors);
        assert!(!errors.is_empty(), "{reason}: accepted");
    }
}

#[test]
fn cpu_admission_agrees_with_the_rust_validation() {
    let schema = schema();
    let base = example("sdnext-dreamshaper.yaml");
    // (vCPU, admitted, reason): the schema's range and `validate` follow SaladCloud's 1-1024.
    let cases = [
        (json!(0), false, "below the minimum"),
        (json!(1), true, "the minimum"),
        (json!(16), true, "the old maximum"),
        (
            json!(17),
            true,
            "above the old 16, within SaladCloud's 1024",
        ),
        (json!(1024), true, "the maximum"),
        (json!(1025), false, "one above the maximum"),
        (json!(-4), false, "negative"),
    ];
    for (value, admitted, reason) in cases {
        let mut object = base.clone();
        object["spec"]["resources"]["cpu"] = value.clone();
        let mut schema_errors = Vec::new();
        openapi_errors(&schema, &object, "$", &mut schema_errors);
        assert_eq!(
            schema_errors.is_empty(),
            admitted,
            "{value} ({reason}): the schema said {schema_errors:?}"
        );
        let typed: StableDiffusionDeployment = serde_json::from_value(object).unwrap();
        let rust = validate(&typed.spec);
        let cpu_errors: Vec<_> = rust
            .iter()
            .filter(|e| e.field == "spec.resources.cpu")
            .collect();
        assert_eq!(
            cpu_errors.is_empty(),
            admitted,
            "{value} ({reason}): Rust said {rust:?}"
        );
        for e in cpu_errors {
            assert!(
                e.message.contains("1-1024 vCPU"),
                "{value} ({reason}): the message names the limits: {e}"
            );
        }
    }
}

#[test]
fn memory_admission_agrees_with_the_rust_conversion() {
    let schema = schema();
    let base = example("sdnext-dreamshaper.yaml");
    // (value, admitted, reason): admission (CEL with the quantity library) and `validate` (which
    // uses `quantity::to_megabytes`) must say the same.
    let cases = [
        (json!(12288), true, "a plain number is MB"),
        (json!("12288"), true, "a digit string is MB too"),
        (json!(1024), true, "the minimum"),
        (json!(1023), false, "one MB below the minimum"),
        (
            json!(61441),
            true,
            "above the old 61440 MB limit, within SaladCloud's",
        ),
        (json!(1073741824), true, "the maximum (1024Ti)"),
        (json!(1073741825), false, "one MB above the maximum"),
        (json!("1073741824"), true, "the maximum as a digit string"),
        (
            json!("1073741825"),
            false,
            "one MB above the maximum as a digit string",
        ),
        (json!(10000000000_u64), false, "far above, 11 digits"),
        (
            json!("99999999999999999999"),
            false,
            "too long for a CEL int: refused before conversion",
        ),
        (json!("1024Mi"), true, "the minimum as a quantity"),
        (
            json!("1024Ti"),
            true,
            "1073741824 MiB, the maximum as a quantity",
        ),
        (json!("1073741824Mi"), true, "the maximum in MiB"),
        (json!("1073741825Mi"), false, "one MiB above"),
        (
            json!("1073741824.5Mi"),
            true,
            "half a MiB above rounds down to the maximum",
        ),
        (json!("1025Ti"), false, "one TiB above"),
        (json!("1023Mi"), false, "one MiB below"),
        (json!("60Gi"), true, "61440 MiB, the old maximum"),
        (json!("12Gi"), true, "binary suffix"),
        (json!("1.5Gi"), true, "fractional quantity, 1536 MB"),
        (json!("12G"), true, "decimal suffix, 11444 MB"),
        (json!("1G"), false, "1e9 bytes is 953 MB, below the minimum"),
        (json!("512Mi"), false, "below the minimum"),
        (
            json!("100Gi"),
            true,
            "above the old 60Gi limit, within SaladCloud's",
        ),
        (json!("2048Ti"), false, "above the maximum"),
        (json!("100m"), false, "a milli-quantity is no memory size"),
        (
            json!("6e10"),
            false,
            "an exponent: a quantity, but not in the grammar Rust reads",
        ),
        (json!("12GB"), false, "not a quantity"),
        (json!("twelve"), false, "not a number"),
    ];
    for (value, admitted, reason) in cases {
        let mut object = base.clone();
        object["spec"]["resources"]["memory"] = value.clone();
        let cel = cel_errors(&schema, &object, None);
        assert_eq!(
            cel.is_empty(),
            admitted,
            "{value} ({reason}): CEL said {cel:?}"
        );
        let typed: StableDiffusionDeployment = serde_json::from_value(object).unwrap();
        let rust = validate(&typed.spec);
        assert_eq!(
            rust.iter().all(|e| !e.field.ends_with("resources.memory")),
            admitted,
            "{value} ({reason}): Rust said {rust:?}"
        );
    }
}
