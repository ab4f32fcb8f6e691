//! The event source mapping as a SAM (or CloudFormation) template deploys it: an `MSK` or
//! `SelfManagedKafka` event of an `AWS::Serverless::Function`, or an
//! `AWS::Lambda::EventSourceMapping` resource. Parameters resolve as `sam deploy` resolves
//! them: the template's defaults, then `samconfig.toml`'s `parameter_overrides` for the chosen
//! environment, then `--parameter-overrides`. Settings the template leaves out get Lambda's
//! documented defaults; settings Lambda would refuse are refused here with the reason.
//!
//! Pure: text in, [`Mapping`] out. The command line reads the files and lets its own flags win.

mod mapping;

use std::collections::BTreeMap;

use serde_norway::Value;

pub use mapping::Mapping;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Written in the template.
    Template,
    /// A parameter's `Default`.
    ParameterDefault(String),
    /// `samconfig.toml`'s `parameter_overrides` for an environment.
    Samconfig(String, String),
    /// `--parameter-overrides`.
    Override(String),
    /// Not set: Lambda's default.
    LambdaDefault,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Template => f.write_str("template"),
            Self::ParameterDefault(name) => write!(f, "parameter {name}, its default"),
            Self::Samconfig(name, env) => write!(f, "parameter {name}, samconfig.toml [{env}]"),
            Self::Override(name) => write!(f, "parameter {name}, --parameter-overrides"),
            Self::LambdaDefault => f.write_str("Lambda's default"),
        }
    }
}

/// Parameter values as `sam deploy` would pass them: name, value, origin.
type Parameters = BTreeMap<String, (String, Origin)>;

/// Reads the mapping `event` (or the only one) of `template`. `samconfig` is the text of a
/// `samconfig.toml` and the environment to take (`default` unless `--config-env` says).
pub fn read(
    template: &str,
    event: Option<&str>,
    samconfig: Option<(&str, &str)>,
    overrides: &[(String, String)],
) -> Result<Mapping, String> {
    let document: Value =
        serde_norway::from_str(template).map_err(|e| format!("the template is not YAML: {e}"))?;
    let parameters = parameters(&document, samconfig, overrides)?;
    let candidates = mappings(&document);
    let (name, properties, resource_form) = match event {
        Some(wanted) => candidates
            .iter()
            .find(|(name, _, _)| name == wanted || name.ends_with(&format!(".{wanted}")))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the template has no Kafka event {wanted}; it has: {}",
                    names(&candidates)
                )
            })?,
        None => match candidates.as_slice() {
            [only] => only.clone(),
            [] => return Err("the template has no MSK or SelfManagedKafka event and no AWS::Lambda::EventSourceMapping".into()),
            _ => {
                return Err(format!(
                    "the template has several Kafka mappings ({}): choose one with --event",
                    names(&candidates)
                ))
            }
        },
    };
    let resolver = Resolver {
        document: &document,
        parameters: &parameters,
    };
    Mapping::from_properties(name, &properties, resource_form, &resolver)
}

fn names(candidates: &[(String, Value, bool)]) -> String {
    candidates
        .iter()
        .map(|(name, _, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every Kafka mapping of the template: (name, properties, resource form).
fn mappings(document: &Value) -> Vec<(String, Value, bool)> {
    let mut found = Vec::new();
    let Some(resources) = document.get("Resources").and_then(Value::as_mapping) else {
        return found;
    };
    for (id, resource) in resources {
        let id = id.as_str().unwrap_or_default();
        let kind = resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let properties = resource.get("Properties").cloned().unwrap_or(Value::Null);
        match kind {
            "AWS::Serverless::Function" => {
                let Some(events) = properties.get("Events").and_then(Value::as_mapping) else {
                    continue;
                };
                for (event_name, event) in events {
                    let event_type = event.get("Type").and_then(Value::as_str);
                    if matches!(event_type, Some("MSK" | "SelfManagedKafka")) {
                        found.push((
                            format!("{id}.{}", event_name.as_str().unwrap_or_default()),
                            event.get("Properties").cloned().unwrap_or(Value::Null),
                            false,
                        ));
                    }
                }
            }
            "AWS::Lambda::EventSourceMapping" => found.push((id.to_owned(), properties, true)),
            _ => {}
        }
    }
    found
}

fn parameters(
    document: &Value,
    samconfig: Option<(&str, &str)>,
    overrides: &[(String, String)],
) -> Result<Parameters, String> {
    let mut values = Parameters::new();
    if let Some(declared) = document.get("Parameters").and_then(Value::as_mapping) {
        for (name, parameter) in declared {
            let name = name.as_str().unwrap_or_default().to_owned();
            if let Some(default) = parameter.get("Default").and_then(scalar_text) {
                values.insert(name.clone(), (default, Origin::ParameterDefault(name)));
            }
        }
    }
    if let Some((text, env)) = samconfig {
        for (name, value) in samconfig_overrides(text, env)? {
            values.insert(
                name.clone(),
                (value, Origin::Samconfig(name, env.to_owned())),
            );
        }
    }
    for (name, value) in overrides {
        values.insert(
            name.clone(),
            (value.clone(), Origin::Override(name.clone())),
        );
    }
    Ok(values)
}

/// `[env.deploy.parameters].parameter_overrides`: a list of `K=V`, or one string of them.
fn samconfig_overrides(text: &str, env: &str) -> Result<Vec<(String, String)>, String> {
    let config: toml::Table = text
        .parse()
        .map_err(|e| format!("samconfig.toml is not TOML: {e}"))?;
    let Some(section) = config.get(env) else {
        return Err(format!("samconfig.toml has no environment [{env}]"));
    };
    let overrides = section
        .get("deploy")
        .and_then(|deploy| deploy.get("parameters"))
        .and_then(|parameters| parameters.get("parameter_overrides"));
    let pairs: Vec<String> = match overrides {
        None => Vec::new(),
        Some(toml::Value::String(line)) => line.split_whitespace().map(str::to_owned).collect(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            return Err(format!(
                "samconfig.toml [{env}]: parameter_overrides is neither a string nor a list"
            ))
        }
    };
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .ok_or_else(|| format!("samconfig.toml [{env}]: {pair:?} is not KEY=VALUE"))
        })
        .collect()
}

/// A template value as the effective settings print it: scalars as they are, lists in
/// brackets.
pub(crate) fn shown(value: &Value) -> String {
    match value {
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(shown).collect::<Vec<_>>().join(", ")
        ),
        other => scalar_text(other).unwrap_or_else(|| "(set)".to_owned()),
    }
}

/// A template value as text, if it is a scalar.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Resolves intrinsic functions far enough to read a mapping: `Ref` (parameters and
/// `AWS::NoValue`), `Fn::If` with the template's `Conditions` (`Fn::Equals`, `Fn::Not`,
/// `Fn::And`, `Fn::Or`, `Condition`), and `Fn::GetAtt` as the resource it names.
pub(crate) struct Resolver<'a> {
    document: &'a Value,
    parameters: &'a Parameters,
}

/// A resolved value: absent (`AWS::NoValue` or not set), or a value and where it came from.
pub(crate) type Resolved = Option<(Value, Origin)>;

impl Resolver<'_> {
    pub(crate) fn resolve(&self, value: Option<&Value>) -> Result<Resolved, String> {
        let Some(value) = value else {
            return Ok(None);
        };
        match intrinsic(value) {
            Some(("Ref", argument)) => {
                let name = argument.as_str().unwrap_or_default();
                if name == "AWS::NoValue" {
                    return Ok(None);
                }
                match self.parameters.get(name) {
                    Some((text, origin)) => Ok(Some((Value::String(text.clone()), origin.clone()))),
                    None if self.resource(name).is_some() => {
                        Ok(Some((Value::String(format!("resource {name}")), Origin::Template)))
                    }
                    None => Err(format!(
                        "parameter {name} has no value: give it with --parameter-overrides {name}=..."
                    )),
                }
            }
            Some(("Fn::If", argument)) => {
                let items = argument
                    .as_sequence()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let [condition, then, otherwise] = items else {
                    return Err("Fn::If needs [condition, then, else]".into());
                };
                let name = condition.as_str().unwrap_or_default();
                let branch = if self.condition(name)? {
                    then
                } else {
                    otherwise
                };
                self.resolve(Some(branch))
            }
            Some(("Fn::GetAtt", argument)) => {
                let target = match argument {
                    Value::String(text) => text.split('.').next().unwrap_or_default().to_owned(),
                    Value::Sequence(items) => items
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    _ => String::new(),
                };
                Ok(Some((
                    Value::String(format!("resource {target}")),
                    Origin::Template,
                )))
            }
            Some((other, _)) => Err(format!(
                "{other} is not supported here; give the value as a parameter"
            )),
            None => Ok(Some((value.clone(), Origin::Template))),
        }
    }

    fn resource(&self, id: &str) -> Option<&Value> {
        self.document.get("Resources").and_then(|r| r.get(id))
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let condition = self
            .document
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| format!("the template has no condition {name}"))?;
        self.truth(condition)
    }

    fn truth(&self, value: &Value) -> Result<bool, String> {
        let (function, argument) =
            intrinsic(value).ok_or_else(|| format!("a condition must be a function: {value:?}"))?;
        let items = argument
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or_default();
        match function {
            "Fn::Equals" => {
                let [a, b] = items else {
                    return Err("Fn::Equals needs two values".into());
                };
                let text = |v: &Value| -> Result<Option<String>, String> {
                    Ok(self.resolve(Some(v))?.and_then(|(v, _)| scalar_text(&v)))
                };
                Ok(text(a)? == text(b)?)
            }
            "Fn::Not" => Ok(!self.truth(items.first().ok_or("Fn::Not needs a condition")?)?),
            "Fn::And" => items
                .iter()
                .try_fold(true, |all, c| Ok(all && self.truth(c)?)),
            "Fn::Or" => items
                .iter()
                .try_fold(false, |any, c| Ok(any || self.truth(c)?)),
            "Condition" => self.condition(argument.as_str().unwrap_or_default()),
            other => Err(format!("{other} is not supported in a condition")),
        }
    }

    /// A resource's type, for `resource ID` values.
    pub(crate) fn resource_type(&self, reference: &str) -> Option<&str> {
        let id = reference.strip_prefix("resource ")?;
        self.resource(id)?.get("Type")?.as_str()
    }
}

/// `!Ref x` and `{Ref: x}`, `!If [...]` and `{"Fn::If": [...]}`: the function and its argument.
fn intrinsic(value: &Value) -> Option<(&str, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let function = match tagged.tag.to_string().trim_start_matches('!') {
                "Ref" => "Ref",
                "If" => "Fn::If",
                "GetAtt" => "Fn::GetAtt",
                "Equals" => "Fn::Equals",
                "Not" => "Fn::Not",
                "And" => "Fn::And",
                "Or" => "Fn::Or",
                "Condition" => "Condition",
                "Sub" => "Fn::Sub",
                "Select" => "Fn::Select",
                "Split" => "Fn::Split",
                "Join" => "Fn::Join",
                _ => "unknown",
            };
            Some((function, &tagged.value))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
                .then_some((key, argument))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TEMPLATE: &str = r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  BatchSize:
    Type: Number
    Default: 500
  Retries:
    Type: Number
    Default: 10
  FilterPattern:
    Type: String
    Default: ""
  Destination:
    Type: String
    Default: S3
Conditions:
  HasFilter: !Not [!Equals [!Ref FilterPattern, ""]]
  ToS3: !Equals [!Ref Destination, S3]
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Orders:
          Type: MSK
          Properties:
            Stream: arn:aws:kafka:us-east-1:1:cluster/c/1
            Topics: [orders]
            ConsumerGroupId: enricher
            StartingPosition: TRIM_HORIZON
            BatchSize: !Ref BatchSize
            MaximumBatchingWindowInSeconds: 1
            MaximumRetryAttempts: !Ref Retries
            FunctionResponseTypes: [ReportBatchItemFailures]
            FilterCriteria: !If
              - HasFilter
              - Filters:
                  - Pattern: !Ref FilterPattern
              - !Ref AWS::NoValue
            ProvisionedPollerConfig:
              MinimumPollers: 1
              MaximumPollers: 4
            DestinationConfig:
              OnFailure:
                Destination: !If [ToS3, !GetAtt Bucket.Arn, !GetAtt Queue.Arn]
"#;

    fn origin_of(mapping: &Mapping, key: &str) -> (String, Origin) {
        mapping
            .origins
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, o)| (v.clone(), o.clone()))
            .unwrap()
    }

    #[test]
    fn settings_come_from_the_template_its_parameters_and_lambdas_defaults() {
        let mapping = read(TEMPLATE, None, None, &[]).unwrap();
        assert_eq!(mapping.name, "Fn.Orders");
        assert_eq!(mapping.settings.batch_size, 500);
        assert_eq!(mapping.settings.batching_window, Duration::from_secs(1));
        assert_eq!(mapping.settings.maximum_retry_attempts, Some(10));
        assert_eq!(mapping.settings.maximum_record_age, None);
        assert!(mapping.settings.report_batch_item_failures);
        assert_eq!(mapping.topics, ["orders"]);
        assert_eq!(mapping.consumer_group_id.as_deref(), Some("enricher"));
        assert_eq!(mapping.pollers, Some((1, 4)));
        assert_eq!(mapping.filters, Vec::<String>::new());
        assert_eq!(
            mapping.on_failure,
            Some(("S3".into(), "resource Bucket".into()))
        );
        assert_eq!(
            origin_of(&mapping, "BatchSize"),
            ("500".into(), Origin::ParameterDefault("BatchSize".into()))
        );
        assert_eq!(
            origin_of(&mapping, "MaximumBatchingWindowInSeconds"),
            ("1".into(), Origin::Template)
        );
        assert_eq!(
            origin_of(&mapping, "MaximumRecordAgeInSeconds"),
            ("-1".into(), Origin::LambdaDefault)
        );
    }

    #[test]
    fn samconfig_and_overrides_win_over_defaults_as_sam_deploy_resolves_them() {
        let samconfig = r#"
version = 0.1
[dev.deploy.parameters]
parameter_overrides = ["BatchSize=100", "Destination=SQS", "FilterPattern={\"value\":{\"Region\":[\"East\"]}}"]
"#;
        let overrides = [("BatchSize".to_owned(), "7".to_owned())];
        let mapping = read(
            TEMPLATE,
            Some("Orders"),
            Some((samconfig, "dev")),
            &overrides,
        )
        .unwrap();
        assert_eq!(mapping.settings.batch_size, 7);
        assert_eq!(
            origin_of(&mapping, "BatchSize"),
            ("7".into(), Origin::Override("BatchSize".into()))
        );
        assert_eq!(
            mapping.on_failure,
            Some(("SQS".into(), "resource Queue".into()))
        );
        assert_eq!(mapping.filters, [r#"{"value":{"Region":["East"]}}"#]);
        let error = read(TEMPLATE, None, Some((samconfig, "prod")), &[]).unwrap_err();
        assert_eq!(error, "samconfig.toml has no environment [prod]");
    }

    #[test]
    fn an_event_source_mapping_resource_is_read_too() {
        let template = r#"
Resources:
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: fn
      EventSourceArn: arn:aws:kafka:us-east-1:1:cluster/c/1
      Topics: [payments]
      StartingPosition: LATEST
      AmazonManagedKafkaEventSourceConfig:
        ConsumerGroupId: payments-group
      BatchSize: 10
      MaximumRecordAgeInSeconds: 3600
      ProvisionedPollerConfig: {MinimumPollers: 2, MaximumPollers: 8}
      DestinationConfig:
        OnFailure:
          Destination: kafka://payments-failed
"#;
        let mapping = read(template, None, None, &[]).unwrap();
        assert_eq!(mapping.name, "Mapping");
        assert_eq!(mapping.topics, ["payments"]);
        assert_eq!(mapping.starting_position, "LATEST");
        assert_eq!(mapping.consumer_group_id.as_deref(), Some("payments-group"));
        assert_eq!(
            mapping.settings.maximum_record_age,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            mapping.settings.maximum_retry_attempts,
            Some(10),
            "infinite retries are capped at 10 with an on-failure destination"
        );
        assert!(
            !mapping.settings.report_batch_item_failures,
            "not set: not on"
        );
        assert_eq!(
            mapping.on_failure,
            Some(("Kafka".into(), "kafka://payments-failed".into()))
        );
        assert_eq!(mapping.pollers, Some((2, 8)));
    }

    #[test]
    fn settings_lambda_would_refuse_are_refused_with_the_reason() {
        let refused = |from: &str, to: &str| {
            read(&TEMPLATE.replacen(from, to, 1), None, None, &[]).unwrap_err()
        };
        assert_eq!(
            refused("Default: 500", "Default: 20000"),
            "Lambda refuses BatchSize 20000: it is 1..10000"
        );
        assert_eq!(
            refused(
                "MaximumBatchingWindowInSeconds: 1",
                "MaximumBatchingWindowInSeconds: 301"
            ),
            "Lambda refuses MaximumBatchingWindowInSeconds 301: it is 0..300"
        );
        assert_eq!(
            refused("StartingPosition: TRIM_HORIZON", "StartingPosition: NEWEST"),
            "Lambda refuses StartingPosition NEWEST: TRIM_HORIZON, LATEST or AT_TIMESTAMP"
        );
        assert_eq!(
            refused("            ProvisionedPollerConfig:\n", "            UnusedPollerConfig:\n"),
            "Lambda refuses MaximumRetryAttempts without ProvisionedPollerConfig: Kafka retry controls and on-failure destinations need provisioned mode"
        );
        assert_eq!(
            refused("Default: 10\n", "Default: 20000\n"),
            "Lambda refuses MaximumRetryAttempts 20000: it is -1 or 0..10000"
        );
    }

    #[test]
    fn a_kafka_destination_naming_a_source_topic_is_refused() {
        let template = TEMPLATE.replacen(
            "Destination: !If [ToS3, !GetAtt Bucket.Arn, !GetAtt Queue.Arn]",
            "Destination: kafka://orders",
            1,
        );
        assert_eq!(
            read(&template, None, None, &[]).unwrap_err(),
            "Lambda refuses the on-failure destination kafka://orders: it is a source topic"
        );
    }

    #[test]
    fn several_mappings_need_a_choice() {
        let template = TEMPLATE.replacen(
            "        Orders:\n",
            "        Other:\n          Type: SelfManagedKafka\n          Properties: {Topics: [x], StartingPosition: LATEST}\n        Orders:\n",
            1,
        );
        assert_eq!(
            read(&template, None, None, &[]).unwrap_err(),
            "the template has several Kafka mappings (Fn.Other, Fn.Orders): choose one with --event"
        );
        assert_eq!(
            read(&template, Some("Other"), None, &[]).unwrap().topics,
            ["x"]
        );
        assert_eq!(
            read(&template, Some("Nope"), None, &[]).unwrap_err(),
            "the template has no Kafka event Nope; it has: Fn.Other, Fn.Orders"
        );
    }
}
