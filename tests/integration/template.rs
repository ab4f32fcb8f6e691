//! The deployment wiring that would lose data if wrong, read from template.yaml.

use serde_norway::Value;

const TEMPLATE: &str = include_str!("../../template.yaml");
const CARGO_TOML: &str = include_str!("../../Cargo.toml");

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

/// A literal number, or the parameter a `!Ref` names.
enum Setting<'a> {
    Literal(f64),
    Parameter(&'a Value),
    Missing,
    Other,
}

fn setting<'a>(template: &'a Value, value: Option<&'a Value>) -> Setting<'a> {
    match value {
        None => Setting::Missing,
        Some(Value::Number(n)) => n.as_f64().map_or(Setting::Other, Setting::Literal),
        Some(Value::Tagged(tagged)) if tagged.tag == "!Ref" => tagged
            .value
            .as_str()
            .and_then(|name| get(template, &["Parameters", name]))
            .map_or(Setting::Other, Setting::Parameter),
        Some(_) => Setting::Other,
    }
}

/// Checks that a numeric setting can only take values in `range`, literal or parameter.
fn check_range(
    problems: &mut Vec<String>,
    template: &Value,
    name: &str,
    value: Option<&Value>,
    range: (f64, f64),
) {
    let number =
        |v: Option<&Value>| v.and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()));
    match setting(template, value) {
        Setting::Literal(n) if n >= range.0 && n <= range.1 => {}
        Setting::Literal(n) => problems.push(format!("{name} is {n}, outside {range:?}")),
        Setting::Parameter(parameter) => {
            let (min, max) = (
                number(parameter.get("MinValue")),
                number(parameter.get("MaxValue")),
            );
            let default = number(parameter.get("Default"));
            match (min, max) {
                (Some(min), Some(max)) if min >= range.0 && max <= range.1 => {}
                _ => problems.push(format!("{name}'s parameter allows values outside {range:?} (MinValue {min:?}, MaxValue {max:?})")),
            }
            if default.is_some_and(|d| d < range.0 || d > range.1) {
                problems.push(format!("{name}'s default {default:?} is outside {range:?}"));
            }
        }
        Setting::Missing => problems.push(format!("{name} is not set")),
        Setting::Other => problems.push(format!(
            "{name} is neither a number nor a !Ref to a parameter"
        )),
    }
}

fn binaries(cargo: &toml::Table) -> Vec<String> {
    let mut names: Vec<String> = cargo
        .get("bin")
        .and_then(|bins| bins.as_array())
        .into_iter()
        .flatten()
        .filter_map(|bin| bin.get("name")?.as_str().map(str::to_owned))
        .collect();
    if let Some(package) = cargo
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    {
        if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs")).exists() {
            names.push(package.to_owned());
        }
    }
    names
}

fn wiring_problems(template: &Value, cargo: &toml::Table) -> Vec<String> {
    let mut problems = Vec::new();
    let resources = get(template, &["Resources"])
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let functions: Vec<&Value> = resources
        .values()
        .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .collect();
    let [function] = functions.as_slice() else {
        return vec![format!(
            "expected one AWS::Serverless::Function, found {}",
            functions.len()
        )];
    };
    let properties = function.get("Properties").cloned().unwrap_or(Value::Null);
    function_problems(&mut problems, template, function, &properties, cargo);
    let events = properties
        .get("Events")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let msk: Vec<&Value> = events
        .values()
        .filter(|e| e.get("Type").and_then(Value::as_str) == Some("MSK"))
        .collect();
    let [event] = msk.as_slice() else {
        problems.push(format!("expected one MSK event, found {}", msk.len()));
        return problems;
    };
    let event = event.get("Properties").cloned().unwrap_or(Value::Null);
    event_problems(&mut problems, template, &event);
    problems.extend(kafka_sink_problems(template, &properties));
    problems.extend(key_problems(template, &properties));
    if event.get("ProvisionedPollerConfig").is_none() {
        problems.push("no ProvisionedPollerConfig: retry limits and the on-failure destination need provisioned mode".to_owned());
    }
    problems
}

/// The function's runtime, handler, build and timeout.
fn function_problems(
    problems: &mut Vec<String>,
    template: &Value,
    function: &Value,
    properties: &Value,
    cargo: &toml::Table,
) {
    let text = |path: &[&str]| {
        get(properties, path)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if text(&["Runtime"]).as_deref() != Some("provided.al2023") {
        problems.push(format!(
            "Runtime is {:?}, not provided.al2023",
            text(&["Runtime"])
        ));
    }
    if text(&["Handler"]).as_deref() != Some("bootstrap") {
        problems.push(format!(
            "Handler is {:?}, not bootstrap",
            text(&["Handler"])
        ));
    }
    if get(function, &["Metadata", "BuildMethod"]).and_then(Value::as_str)
        != Some("rust-cargolambda")
    {
        problems.push("Metadata.BuildMethod is not rust-cargolambda".to_owned());
    }
    let binary = get(function, &["Metadata", "BuildProperties", "Binary"]).and_then(Value::as_str);
    let crate_binaries = binaries(cargo);
    match binary {
        Some(name) if crate_binaries.iter().any(|b| b == name) && name == "msk-order-enricher" => {}
        other => problems.push(format!(
            "BuildProperties.Binary is {other:?}; the crate's binaries are {crate_binaries:?} and the function is msk-order-enricher"
        )),
    }
    check_range(
        problems,
        template,
        "Timeout",
        properties.get("Timeout"),
        (1.0, 840.0),
    );
}

/// The MSK event's response types, retry limits, batch size and on-failure destination.
fn event_problems(problems: &mut Vec<String>, template: &Value, event: &Value) {
    let response_types: Vec<&str> = event
        .get("FunctionResponseTypes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !response_types.contains(&"ReportBatchItemFailures") {
        problems.push("FunctionResponseTypes lacks ReportBatchItemFailures: partial batch responses would be ignored".to_owned());
    }
    check_range(
        problems,
        template,
        "MaximumRetryAttempts",
        event.get("MaximumRetryAttempts"),
        (0.0, 10_000.0),
    );
    check_range(
        problems,
        template,
        "MaximumRecordAgeInSeconds",
        event.get("MaximumRecordAgeInSeconds"),
        (60.0, 604_800.0),
    );
    check_range(
        problems,
        template,
        "BatchSize",
        event.get("BatchSize"),
        (1.0, 10_000.0),
    );
    if get(event, &["DestinationConfig", "OnFailure", "Destination"]).is_none() {
        problems.push("no on-failure destination: exhausted batches would be dropped".to_owned());
    }
    // Only S3 (and Kafka) destinations keep the records themselves; SQS and SNS get offsets,
    // which are useless once the records leave the topic.
    let default_destination =
        get(template, &["Parameters", "OnFailureDestination", "Default"]).and_then(Value::as_str);
    if default_destination != Some("S3") {
        problems.push(format!(
            "the default on-failure destination is {default_destination:?}, which does not keep the records; S3 does"
        ));
    }
}

/// Every mapping with a `Sid` under `value`, by Sid, with its actions.
fn statements(value: &Value, found: &mut Vec<(String, Vec<String>)>) {
    match value {
        Value::Mapping(map) => {
            if let Some(sid) = map.get("Sid").and_then(Value::as_str) {
                let actions = match map.get("Action") {
                    Some(Value::String(action)) => vec![action.clone()],
                    Some(Value::Sequence(actions)) => actions
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    _ => vec![],
                };
                found.push((sid.to_owned(), actions));
            }
            map.values().for_each(|v| statements(v, found));
        }
        Value::Sequence(items) => items.iter().for_each(|v| statements(v, found)),
        Value::Tagged(tagged) => statements(&tagged.value, found),
        _ => {}
    }
}

/// The output topic: variables the function knows, the sinks it accepts, the permissions the
/// idempotent producer needs, and an alarm on undelivered records.
fn kafka_sink_problems(template: &Value, properties: &Value) -> Vec<String> {
    use msk_order_enricher::config::VARIABLES;
    use msk_order_enricher::report::metrics::names::PRODUCE_FAILURES;

    let mut problems = Vec::new();
    let variables = get(properties, &["Environment", "Variables"])
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for name in variables.keys().filter_map(Value::as_str) {
        if !VARIABLES.contains(&name) {
            problems.push(format!("the function reads no variable {name}"));
        }
    }
    let sinks = get(template, &["Parameters", "Sinks"]);
    let allowed: Vec<&str> = sinks
        .and_then(|p| p.get("AllowedValues"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if allowed
        .iter()
        .any(|v| !["postgres", "postgres,kafka", "kafka"].contains(v))
    {
        problems.push(format!(
            "Sinks allows {allowed:?}; the function knows postgres, postgres,kafka and kafka"
        ));
    }
    if sinks.and_then(|p| p.get("Default")).and_then(Value::as_str) != Some("postgres") {
        problems.push("Sinks does not default to postgres".to_owned());
    }
    let mut found = Vec::new();
    statements(
        properties.get("Policies").unwrap_or(&Value::Null),
        &mut found,
    );
    let grants = |sid: &str, action: &str| {
        found
            .iter()
            .any(|(s, actions)| s == sid && actions.iter().any(|a| a == action))
    };
    for (sid, action) in [
        ("WriteOutputTopic", "kafka-cluster:WriteData"),
        ("WriteOutputTopic", "kafka-cluster:DescribeTopic"),
        ("ProduceIdempotently", "kafka-cluster:WriteDataIdempotently"),
    ] {
        if !grants(sid, action) {
            problems.push(format!(
                "no {sid} statement granting {action}: the producer would be refused"
            ));
        }
    }
    let alarmed = get(template, &["Resources"])
        .and_then(Value::as_mapping)
        .into_iter()
        .flat_map(|resources| resources.values())
        .any(|r| {
            r.get("Type").and_then(Value::as_str) == Some("AWS::CloudWatch::Alarm")
                && get(r, &["Properties", "MetricName"]).and_then(Value::as_str)
                    == Some(PRODUCE_FAILURES)
        });
    if !alarmed {
        problems.push(format!(
            "no alarm on {PRODUCE_FAILURES}: undelivered records would go unnoticed"
        ));
    }
    problems
}

/// What KMS keys must allow for the deployment to work: the SCRAM secret's customer-managed key
/// (MSK refuses secrets under the default key) decrypted by the role, and the alarm topic under
/// a key CloudWatch may use (it cannot use the AWS-managed `aws/sns`).
fn key_problems(template: &Value, properties: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    statements(
        properties.get("Policies").unwrap_or(&Value::Null),
        &mut found,
    );
    let decrypts_scram = found.iter().any(|(sid, actions)| {
        sid == "DecryptScramSecret" && actions.iter().any(|a| a == "kms:Decrypt")
    });
    if get(template, &["Parameters", "ScramSecretKmsKeyArn"]).is_none() || !decrypts_scram {
        problems.push("no ScramSecretKmsKeyArn with a DecryptScramSecret statement granting kms:Decrypt: SASL_SCRAM could not read its secret".to_owned());
    }
    let resources = get(template, &["Resources"]);
    let topic_key = resources
        .and_then(|r| r.get("AlarmTopic"))
        .and_then(|topic| get(topic, &["Properties", "KmsMasterKeyId"]));
    if topic_key.and_then(Value::as_str) == Some("alias/aws/sns") {
        problems.push("the alarm topic is encrypted with alias/aws/sns, which CloudWatch alarms cannot publish with".to_owned());
    }
    let mut key_statements = Vec::new();
    statements(
        resources
            .and_then(|r| r.get("AlarmTopicKey"))
            .and_then(|key| get(key, &["Properties", "KeyPolicy"]))
            .unwrap_or(&Value::Null),
        &mut key_statements,
    );
    let cloudwatch_may_use = key_statements.iter().any(|(sid, actions)| {
        sid == "CloudWatchAlarmsPublish"
            && ["kms:Decrypt", "kms:GenerateDataKey*"]
                .iter()
                .all(|needed| actions.iter().any(|a| a == needed))
    });
    if !cloudwatch_may_use {
        problems.push("the alarm topic's key does not let cloudwatch.amazonaws.com use it: no alarm would be delivered".to_owned());
    }
    problems
}

fn parse() -> (Value, toml::Table) {
    (
        serde_norway::from_str(TEMPLATE).expect("template.yaml parses"),
        CARGO_TOML.parse().expect("Cargo.toml parses"),
    )
}

#[test]
fn the_template_wires_the_mapping_safely() {
    let (template, cargo) = parse();
    assert_eq!(wiring_problems(&template, &cargo), Vec::<String>::new());
}

#[test]
fn each_dangerous_mistake_is_caught() {
    let mistakes: [(&str, &str, &str); 13] = [
        (
            "FunctionResponseTypes: [ReportBatchItemFailures]",
            "FunctionResponseTypes: []",
            "lacks ReportBatchItemFailures",
        ),
        (
            "    MinValue: 0\n    MaxValue: 10000\n    Description: Retries",
            "    MinValue: -1\n    MaxValue: 10000\n    Description: Retries",
            "MaximumRetryAttempts's parameter allows",
        ),
        (
            "    MinValue: 60\n    MaxValue: 604800",
            "    MinValue: -1\n    MaxValue: 604800",
            "MaximumRecordAgeInSeconds's parameter allows",
        ),
        (
            "    MinValue: 5\n    MaxValue: 840",
            "    MinValue: 5\n    MaxValue: 900",
            "Timeout's parameter allows",
        ),
        ("Handler: bootstrap", "Handler: main", "Handler is"),
        (
            "Binary: msk-order-enricher",
            "Binary: esm-local",
            "BuildProperties.Binary",
        ),
        (
            "            DestinationConfig:\n",
            "            UnusedDestinationConfig:\n",
            "no on-failure destination",
        ),
        (
            "Action: kafka-cluster:WriteDataIdempotently",
            "Action: kafka-cluster:WriteData",
            "WriteDataIdempotently",
        ),
        (
            "MetricName: ProduceFailures",
            "MetricName: ProduceFailure",
            "no alarm on ProduceFailures",
        ),
        (
            "          SINKS: !Ref Sinks",
            "          SINK: !Ref Sinks",
            "the function reads no variable SINK",
        ),
        (
            "    Default: S3\n    AllowedValues: [S3, SQS]",
            "    Default: SQS\n    AllowedValues: [S3, SQS]",
            "does not keep the records",
        ),
        (
            "Sid: DecryptScramSecret",
            "Sid: DecryptNothing",
            "SASL_SCRAM could not read its secret",
        ),
        (
            "KmsMasterKeyId: !GetAtt AlarmTopicKey.Arn",
            "KmsMasterKeyId: alias/aws/sns",
            "CloudWatch alarms cannot publish",
        ),
    ];
    let cargo: toml::Table = CARGO_TOML.parse().unwrap();
    for (from, to, expected) in mistakes {
        assert!(
            TEMPLATE.contains(from),
            "the mutation {from:?} no longer applies"
        );
        let template: Value = serde_norway::from_str(&TEMPLATE.replacen(from, to, 1)).unwrap();
        let problems = wiring_problems(&template, &cargo);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {problems:?}"
        );
    }
}

/// `esm-local run --template template.yaml` runs what `sam deploy` deploys: the settings it
/// reads from this template are the ones the template sets.
#[test]
fn esm_local_reads_the_mapping_this_template_deploys() {
    use std::time::Duration;

    let mapping = esm_local::template::read(TEMPLATE, None, None, &[]).unwrap();
    assert_eq!(mapping.name, "EnricherFunction.Orders");
    let settings = &mapping.settings;
    assert_eq!(settings.batch_size, 500);
    assert_eq!(settings.batching_window, Duration::from_secs(1));
    assert_eq!(settings.maximum_retry_attempts, Some(10));
    assert_eq!(
        settings.maximum_record_age,
        Some(Duration::from_secs(86_400))
    );
    assert!(!settings.bisect_batch_on_function_error);
    assert!(settings.report_batch_item_failures);
    assert_eq!(mapping.topics, ["orders"]);
    assert_eq!(
        mapping.consumer_group_id.as_deref(),
        Some("msk-order-enricher")
    );
    assert_eq!(mapping.starting_position, "TRIM_HORIZON");
    assert_eq!(mapping.pollers, Some((1, 4)));
    assert_eq!(mapping.filters, Vec::<String>::new());
    assert_eq!(
        mapping.on_failure,
        Some(("S3".to_owned(), "resource OnFailureBucket".to_owned()))
    );

    // The dev environment of samconfig.toml, as `sam deploy --config-env dev` would deploy it.
    let samconfig = include_str!("../../samconfig.toml");
    let dev = esm_local::template::read(TEMPLATE, None, Some((samconfig, "dev")), &[]).unwrap();
    assert_eq!(dev.settings.batch_size, 100);
    assert_eq!(dev.pollers, Some((1, 2)));
    assert_eq!(
        dev.consumer_group_id.as_deref(),
        Some("msk-order-enricher-dev")
    );
    let sqs = esm_local::template::read(
        TEMPLATE,
        None,
        None,
        &[("OnFailureDestination".to_owned(), "SQS".to_owned())],
    )
    .unwrap();
    assert_eq!(
        sqs.on_failure,
        Some(("SQS".to_owned(), "resource OnFailureQueue".to_owned()))
    );
}
