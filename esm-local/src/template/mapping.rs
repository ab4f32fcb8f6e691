//! The mapping a template deploys: its properties read through the [`Resolver`], checked
//! against Lambda's limits and defaults for Kafka mappings (kafka-retry-configurations,
//! invocation-eventsourcemapping), each setting kept with where it came from.

use std::time::Duration;

use serde_norway::Value;

use super::{scalar_text, shown, Origin, Resolved, Resolver};
use crate::rules::Settings;

/// The mapping a template deploys, with where each setting came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// The event's name (`Function.Event`) or the resource's logical id.
    pub name: String,
    /// The delivery settings.
    pub settings: Settings,
    /// `Topics`.
    pub topics: Vec<String>,
    /// `ConsumerGroupId` (from `AmazonManagedKafkaEventSourceConfig` or
    /// `SelfManagedKafkaEventSourceConfig` for the resource form).
    pub consumer_group_id: Option<String>,
    /// `StartingPosition`.
    pub starting_position: String,
    /// `StartingPositionTimestamp`, epoch seconds.
    pub starting_position_timestamp: Option<f64>,
    /// `FilterCriteria.Filters[].Pattern`.
    pub filters: Vec<String>,
    /// The kind of `DestinationConfig.OnFailure` (`S3`, `SQS`, `SNS` or `Kafka`) and what it
    /// names (an ARN, a resource, or `kafka://topic`).
    pub on_failure: Option<(String, String)>,
    /// `ProvisionedPollerConfig`: minimum and maximum pollers.
    pub pollers: Option<(u32, u32)>,
    /// Each setting, its value as text, and where it came from, in a fixed order.
    pub origins: Vec<(&'static str, String, Origin)>,
}

/// `BatchSize`: minimum, maximum, default.
const BATCH_SIZE: (i64, i64, i64) = (1, 10_000, 100);
/// `MaximumBatchingWindowInSeconds`: minimum, maximum, default.
const WINDOW_SECONDS: (f64, f64, f64) = (0.0, 300.0, 0.5);
/// The settings Lambda's default fills in when the template leaves them out, as text.
const DEFAULTS: [(&str, &str); 5] = [
    ("BatchSize", "100"),
    ("MaximumBatchingWindowInSeconds", "0.5"),
    ("MaximumRetryAttempts", "-1"),
    ("MaximumRecordAgeInSeconds", "-1"),
    ("BisectBatchOnFunctionError", "false"),
];

/// The delivery settings as the template writes them, before Lambda's limits are applied.
struct Written {
    batch_size: Option<i64>,
    window: Option<f64>,
    retries: Option<i64>,
    age: Option<i64>,
    bisect: Option<bool>,
    report: bool,
    starting: Resolved,
    starting_timestamp: Option<f64>,
}

/// A mapping's properties, read through the resolver; each setting read is kept with its
/// origin, in the order read.
struct Properties<'p, 'r> {
    properties: &'p Value,
    resolver: &'r Resolver<'r>,
    origins: Vec<(&'static str, String, Origin)>,
}

impl Properties<'_, '_> {
    /// The setting `key`, resolved, its origin noted.
    fn setting(&mut self, key: &'static str) -> Result<Resolved, String> {
        let resolved = self.resolver.resolve(self.properties.get(key))?;
        if let Some((value, origin)) = &resolved {
            self.origins.push((key, shown(value), origin.clone()));
        }
        Ok(resolved)
    }

    /// The setting `key` as a number.
    fn number(&mut self, key: &'static str) -> Result<Option<f64>, String> {
        self.setting(key)?
            .map(|(value, _)| {
                scalar_text(&value)
                    .and_then(|text| text.trim().parse::<f64>().ok())
                    .ok_or_else(|| format!("{key} is not a number: {value:?}"))
            })
            .transpose()
    }

    /// The setting `key` as a whole number.
    fn whole(&mut self, key: &'static str) -> Result<Option<i64>, String> {
        self.number(key)?
            .map(|v| {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    // Checked whole and small just above.
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(v as i64)
                } else {
                    Err(format!("{key} must be a whole number, not {v}"))
                }
            })
            .transpose()
    }

    /// The delivery settings, in the order the origins list them.
    fn written(&mut self) -> Result<Written, String> {
        let batch_size = self.whole("BatchSize")?;
        let window = self.number("MaximumBatchingWindowInSeconds")?;
        let retries = self.whole("MaximumRetryAttempts")?;
        let age = self.whole("MaximumRecordAgeInSeconds")?;
        let bisect = self
            .setting("BisectBatchOnFunctionError")?
            .map(|(value, _)| scalar_text(&value).unwrap_or_default() == "true");
        let report = match self.setting("FunctionResponseTypes")? {
            None => false,
            Some((Value::Sequence(types), _)) => types
                .iter()
                .any(|t| t.as_str() == Some("ReportBatchItemFailures")),
            Some((other, _)) => {
                return Err(format!(
                    "FunctionResponseTypes must be a list, not {other:?}"
                ))
            }
        };
        let starting = self.setting("StartingPosition")?;
        let starting_timestamp = self.number("StartingPositionTimestamp")?;
        Ok(Written {
            batch_size,
            window,
            retries,
            age,
            bisect,
            report,
            starting,
            starting_timestamp,
        })
    }

    /// The text of each item of the list `key`; `what` names an item without a value.
    fn texts(&self, items: &[Value], what: &str) -> Result<Vec<String>, String> {
        items
            .iter()
            .map(|item| {
                self.resolver
                    .resolve(Some(item))?
                    .and_then(|(v, _)| scalar_text(&v))
                    .ok_or_else(|| format!("{what} has no value"))
            })
            .collect()
    }

    fn topics(&self, name: &str) -> Result<Vec<String>, String> {
        match self.resolver.resolve(self.properties.get("Topics"))? {
            Some((Value::Sequence(items), _)) => self.texts(&items, "a topic"),
            _ => Err(format!("{name}: Topics is required")),
        }
    }

    /// `ConsumerGroupId`, inside the `...KafkaEventSourceConfig` of the resource form.
    fn consumer_group_id(&self, resource_form: bool) -> Result<Option<String>, String> {
        let key = if resource_form {
            [
                "AmazonManagedKafkaEventSourceConfig",
                "SelfManagedKafkaEventSourceConfig",
            ]
            .iter()
            .find_map(|key| self.properties.get(*key)?.get("ConsumerGroupId"))
        } else {
            self.properties.get("ConsumerGroupId")
        };
        Ok(self
            .resolver
            .resolve(key)?
            .and_then(|(value, _)| scalar_text(&value)))
    }

    fn filters(&self) -> Result<Vec<String>, String> {
        let Some((criteria, _)) = self
            .resolver
            .resolve(self.properties.get("FilterCriteria"))?
        else {
            return Ok(Vec::new());
        };
        criteria
            .get("Filters")
            .and_then(Value::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|filter| {
                self.resolver
                    .resolve(filter.get("Pattern"))?
                    .and_then(|(v, _)| scalar_text(&v))
                    .ok_or_else(|| "a filter has no Pattern".to_owned())
            })
            .collect()
    }

    /// `DestinationConfig.OnFailure`: its kind and what it names.
    fn on_failure(&self) -> Result<Option<(String, String)>, String> {
        let Some(on_failure) = self
            .properties
            .get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
        else {
            return Ok(None);
        };
        let destination = self
            .resolver
            .resolve(on_failure.get("Destination"))?
            .and_then(|(v, _)| scalar_text(&v));
        Ok(destination.map(|destination| {
            let kind = destination_kind(&destination, self.resolver);
            (kind, destination)
        }))
    }

    /// `ProvisionedPollerConfig`: minimum and maximum pollers, with Lambda's defaults.
    fn pollers(&self) -> Result<Option<(u32, u32)>, String> {
        let Some((config, _)) = self
            .resolver
            .resolve(self.properties.get("ProvisionedPollerConfig"))?
        else {
            return Ok(None);
        };
        let count = |key: &str| -> Result<Option<u32>, String> {
            self.resolver
                .resolve(config.get(key))?
                .and_then(|(v, _)| scalar_text(&v))
                .map(|text| {
                    text.parse::<u32>().map_err(|_| {
                        format!("ProvisionedPollerConfig.{key} is not a count: {text}")
                    })
                })
                .transpose()
        };
        Ok(Some((
            count("MinimumPollers")?.unwrap_or(1),
            count("MaximumPollers")?.unwrap_or(200),
        )))
    }
}

impl Mapping {
    pub(super) fn from_properties(
        name: String,
        properties: &Value,
        resource_form: bool,
        resolver: &Resolver<'_>,
    ) -> Result<Self, String> {
        let mut read = Properties {
            properties,
            resolver,
            origins: Vec::new(),
        };
        let written = read.written()?;
        let topics = read.topics(&name)?;
        let consumer_group_id = read.consumer_group_id(resource_form)?;
        let filters = read.filters()?;
        let on_failure = read.on_failure()?;
        let pollers = read.pollers()?;
        let settings = within_limits(&written, on_failure.is_some())?;
        check_provisioned_mode(&written, on_failure.is_some(), pollers)?;
        check_on_failure(on_failure.as_ref(), &topics)?;
        let starting_position = starting_position(&name, written.starting)?;
        let mut origins = read.origins;
        for (key, default) in DEFAULTS {
            if !origins.iter().any(|(k, _, _)| *k == key) {
                origins.push((key, default.to_owned(), Origin::LambdaDefault));
            }
        }
        Ok(Self {
            name,
            settings,
            topics,
            consumer_group_id,
            starting_position,
            starting_position_timestamp: written.starting_timestamp,
            filters,
            on_failure,
            pollers,
            origins,
        })
    }

    /// The effective settings, one line each, with where they came from.
    pub fn describe(&self) -> String {
        let mut lines = vec![format!("event source mapping {}:", self.name)];
        for (key, value, origin) in &self.origins {
            lines.push(format!("  {key} = {value} ({origin})"));
        }
        lines.push(format!("  Topics = {}", self.topics.join(", ")));
        if let Some(group) = &self.consumer_group_id {
            lines.push(format!("  ConsumerGroupId = {group}"));
        }
        lines.push(format!(
            "  FunctionResponseTypes = {}",
            if self.settings.report_batch_item_failures {
                "[ReportBatchItemFailures]"
            } else {
                "[] (reported failures are taken as success)"
            }
        ));
        if let Some((min, max)) = self.pollers {
            lines.push(format!("  ProvisionedPollerConfig = {min}..{max} pollers"));
        }
        if let Some((kind, destination)) = &self.on_failure {
            lines.push(format!(
                "  DestinationConfig.OnFailure = {kind} ({destination})"
            ));
        }
        for filter in &self.filters {
            lines.push(format!("  FilterCriteria pattern = {filter}"));
        }
        lines.join("\n")
    }
}

/// The delivery settings with Lambda's defaults, or why Lambda refuses one of them.
fn within_limits(written: &Written, has_on_failure: bool) -> Result<Settings, String> {
    let mut settings = Settings {
        report_batch_item_failures: written.report,
        ..Settings::default()
    };
    settings.batch_size = match written.batch_size {
        None => usize::try_from(BATCH_SIZE.2).unwrap_or(100),
        Some(n) if (BATCH_SIZE.0..=BATCH_SIZE.1).contains(&n) => usize::try_from(n).unwrap_or(100),
        Some(n) => return Err(format!("Lambda refuses BatchSize {n}: it is 1..10000")),
    };
    settings.batching_window = match written.window {
        None => Duration::from_secs_f64(WINDOW_SECONDS.2),
        Some(s) if (WINDOW_SECONDS.0..=WINDOW_SECONDS.1).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(format!(
                "Lambda refuses MaximumBatchingWindowInSeconds {s}: it is 0..300"
            ))
        }
    };
    settings.maximum_retry_attempts = match written.retries {
        None | Some(-1) => None,
        Some(n) if (0..=10_000).contains(&n) => u32::try_from(n).ok(),
        Some(n) => {
            return Err(format!(
                "Lambda refuses MaximumRetryAttempts {n}: it is -1 or 0..10000"
            ))
        }
    };
    settings.maximum_record_age = match written.age {
        None | Some(-1) => None,
        Some(n) if (60..=604_800).contains(&n) => u64::try_from(n).ok().map(Duration::from_secs),
        Some(n) => {
            return Err(format!(
                "Lambda refuses MaximumRecordAgeInSeconds {n}: it is -1 or 60..604800"
            ))
        }
    };
    settings.bisect_batch_on_function_error = written.bisect.unwrap_or(false);
    // With any on-failure destination Lambda caps "infinite" retries at 10.
    if has_on_failure && settings.maximum_retry_attempts.is_none() {
        settings.maximum_retry_attempts = Some(10);
    }
    Ok(settings)
}

/// Kafka retry controls and on-failure destinations need provisioned mode, whose poller counts
/// have limits of their own.
fn check_provisioned_mode(
    written: &Written,
    has_on_failure: bool,
    pollers: Option<(u32, u32)>,
) -> Result<(), String> {
    let provisioned_only = [
        ("MaximumRetryAttempts", written.retries.is_some()),
        ("MaximumRecordAgeInSeconds", written.age.is_some()),
        ("BisectBatchOnFunctionError", written.bisect.is_some()),
        ("DestinationConfig.OnFailure", has_on_failure),
    ];
    let Some((min, max)) = pollers else {
        if let Some((key, _)) = provisioned_only.iter().find(|(_, set)| *set) {
            return Err(format!(
                "Lambda refuses {key} without ProvisionedPollerConfig: Kafka retry controls and on-failure destinations need provisioned mode"
            ));
        }
        return Ok(());
    };
    if !(1..=200).contains(&min) || !(1..=2000).contains(&max) || min > max {
        return Err(format!(
            "Lambda refuses ProvisionedPollerConfig {min}..{max}: MinimumPollers is 1..200, MaximumPollers 1..2000 and at least the minimum"
        ));
    }
    Ok(())
}

/// A `kafka://` on-failure destination must not be a source topic.
fn check_on_failure(
    on_failure: Option<&(String, String)>,
    topics: &[String],
) -> Result<(), String> {
    if let Some((kind, destination)) = on_failure {
        if kind == "Kafka" {
            let topic = destination.trim_start_matches("kafka://");
            if topics.iter().any(|t| t == topic) {
                return Err(format!(
                    "Lambda refuses the on-failure destination {destination}: it is a source topic"
                ));
            }
        }
    }
    Ok(())
}

/// `StartingPosition`, which Kafka mappings require.
fn starting_position(name: &str, starting: Resolved) -> Result<String, String> {
    let starting_position = starting
        .and_then(|(value, _)| scalar_text(&value))
        .ok_or_else(|| format!("{name}: StartingPosition is required for Kafka"))?;
    if !matches!(
        starting_position.as_str(),
        "TRIM_HORIZON" | "LATEST" | "AT_TIMESTAMP"
    ) {
        return Err(format!(
            "Lambda refuses StartingPosition {starting_position}: TRIM_HORIZON, LATEST or AT_TIMESTAMP"
        ));
    }
    Ok(starting_position)
}

/// `S3`, `SQS`, `SNS` or `Kafka`, from an ARN, a `kafka://` URL or the resource it names.
fn destination_kind(destination: &str, resolver: &Resolver<'_>) -> String {
    if destination.starts_with("kafka://") {
        return "Kafka".into();
    }
    let from_type = resolver.resource_type(destination).map(|kind| match kind {
        "AWS::S3::Bucket" => "S3",
        "AWS::SQS::Queue" => "SQS",
        "AWS::SNS::Topic" => "SNS",
        _ => "unknown",
    });
    let from_arn = || match destination.split(':').nth(2) {
        Some("s3") => "S3",
        Some("sqs") => "SQS",
        Some("sns") => "SNS",
        _ => "unknown",
    };
    from_type.unwrap_or_else(from_arn).to_owned()
}
