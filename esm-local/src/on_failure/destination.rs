//! The on-failure destination: where records the mapping gives up on are kept. A file gets
//! what Lambda puts in an S3 object (metadata and the whole event as `payload`), one JSON
//! document per line; an SQS queue gets what Lambda sends to SQS (metadata only).

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::Value;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The on-failure destination.
pub enum Destination {
    /// Records are dropped, as with no destination configured on AWS.
    None,
    /// A file of S3-form documents, one per line (with `payload`).
    File(PathBuf),
    /// A `kafka://topic` destination on the source's broker: the S3 form, one record each.
    #[cfg(feature = "kafka")]
    Kafka(crate::source::kafka::FailureTopic),
    /// An SQS queue: the SQS form, metadata only.
    #[cfg(feature = "sqs")]
    Sqs {
        /// The SQS client.
        client: aws_sdk_sqs::Client,
        /// The queue.
        queue_url: String,
    },
}

impl Destination {
    /// An SQS queue at `queue_url`, with the AWS configuration from the environment
    /// (`AWS_ENDPOINT_URL` points it at moto or LocalStack).
    #[cfg(feature = "sqs")]
    pub async fn sqs(queue_url: String) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::Sqs {
            client: aws_sdk_sqs::Client::new(&config),
            queue_url,
        }
    }

    /// Whether the record should carry the event (`payload`), as Lambda's S3 destination does.
    pub fn wants_payload(&self) -> bool {
        match self {
            Self::File(_) => true,
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => true,
            _ => false,
        }
    }

    /// The destination in words, for the run's output.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "none (records given up on are dropped)".into(),
            Self::File(path) => format!("file {}", path.display()),
            #[cfg(feature = "kafka")]
            Self::Kafka(topic) => format!("Kafka topic {}", topic.topic()),
            #[cfg(feature = "sqs")]
            Self::Sqs { queue_url, .. } => format!("SQS queue {queue_url}"),
        }
    }

    /// Keeps one on-failure document.
    pub async fn send(&self, record: &Value) -> Result<(), Error> {
        match self {
            Self::None => Ok(()),
            Self::File(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                writeln!(file, "{record}")
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                Ok(())
            }
            #[cfg(feature = "kafka")]
            Self::Kafka(topic) => topic.send(&record.to_string()).await,
            #[cfg(feature = "sqs")]
            Self::Sqs { client, queue_url } => {
                client
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(record.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "sending to {queue_url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        )
                    })?;
                Ok(())
            }
        }
    }
}
